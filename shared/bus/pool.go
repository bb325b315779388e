package bus

import "time"

// poolIdle is how long a Pool's goroutine waits for more work before it
// ends.
const poolIdle = 10 * time.Second

// Pool runs functions on goroutines that it keeps, once a function is done,
// for the next one. A message handler run on a new goroutine starts on a
// small stack and grows it, copying it each time; decoding and publishing
// JSON grow it several times. Under load that copying was about 5 % of the
// server's CPU (docs/performance.md, finding 15). A goroutine of the pool
// keeps the stack it grew.
//
// A Pool does not limit how many functions run at once: its callers do.
// Goroutines left idle for 10 s end. A function must leave its goroutine as
// it found it (no runtime.LockOSThread without its unlock). The zero Pool is not usable; use
// NewPool.
type Pool struct {
	work chan func()
}

// NewPool makes a pool with no goroutines yet.
func NewPool() *Pool { return &Pool{work: make(chan func())} }

// Go runs f on an idle goroutine of the pool, or on a new one when none is
// idle.
func (p *Pool) Go(f func()) {
	select {
	case p.work <- f:
	default:
		go p.run(f)
	}
}

func (p *Pool) run(f func()) {
	idle := time.NewTimer(poolIdle)
	defer idle.Stop()
	for {
		f()
		f = nil // nothing of it is kept while idle
		idle.Reset(poolIdle)
		select {
		case f = <-p.work:
		case <-idle.C:
			return
		}
	}
}
