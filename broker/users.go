package broker

// Kicker is implemented by a Handler whose server closes connections when
// the broker asks it to: ForgetUser calls Kick, on the Handler of the
// server holding each client it forgets, with the client's id and the
// reason given.
//
// Kick is called like Deliver (from any goroutine, without the broker's
// locks held; it must not block for long) and after the messages that were
// on their way to the client's server before ForgetUser ran (with the Redis
// broker, it travels through the server's inbox). The client is already
// forgotten when Kick runs: the server closes the connection and must not
// mark the client away (Disconnect does nothing for it) nor send it more
// mail. A Kick for a client the server no longer holds is ignored.
//
// A Handler that does not implement Kicker gets no kicks: the sessions of
// its clients are still forgotten, but their connections stay open until
// they close by themselves. Rocket's servers implement it.
type Kicker interface {
	// Kick asks the server to close the connection of clientID, which
	// ForgetUser has forgotten, giving reason.
	Kick(clientID, reason string)
}
