package wsconn

// Reading a piece at a time, for tests that check the framing rather than
// Serve's loop: production reads only through Serve's handler.

// fill reads once: Serve with a handler that stops after the first read
// that returned bytes. It keeps what TryPiece has not consumed.
func (c *Conn) fill() error { return c.Serve(stopOnArrival) }

func stopOnArrival(ev ServeEvent) bool { return ev == Arrived }

// fillParking is fill calling parking on Parking.
func (c *Conn) fillParking(parking func()) error {
	return c.Serve(func(ev ServeEvent) bool {
		if ev == Parking {
			parking()
			return false
		}
		return true
	})
}

// nextPiece returns the next piece of data-message payload, reading as
// needed. Errors are final, as Serve's.
func (c *Conn) nextPiece() (Piece, error) { return c.nextPieceParking(nil) }

// nextPieceParking is nextPiece calling parking, if set, on Parking.
func (c *Conn) nextPieceParking(parking func()) (Piece, error) {
	for {
		p, ok, err := c.TryPiece()
		if err != nil || ok {
			return p, err
		}
		if parking != nil {
			err = c.fillParking(parking)
		} else {
			err = c.fill()
		}
		if err != nil {
			return Piece{}, err
		}
	}
}
