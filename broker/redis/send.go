package redis

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/rocket-go/rocket/broker"
)

// maxSendBatch bounds the messages carried by one script call.
const maxSendBatch = 256

// sendWorkers is how many batches may be under way at once.
const sendWorkers = 4

// sendTimeout bounds one batch's script call.
const sendTimeout = 5 * time.Second

// sendReq is one Send waiting for its batch.
type sendReq struct {
	ctx  context.Context
	id   string
	data []byte
	done chan error // capacity 1
}

// sendQueue carries Send's messages to Redis in batches, taken from the
// queue in the order the Sends were made, by up to sendWorkers goroutines
// at once. A Send returns only once its batch is done, so the messages one
// goroutine sends one after the other are never in flight together and stay
// in order; concurrent Sends have no order between them anyway.
type sendQueue struct {
	b    *Broker
	wake chan struct{}  // capacity 1
	quit chan struct{}  // closed by stop
	wg   sync.WaitGroup // the workers
	reqs sync.Pool      // *sendReq

	mu      sync.Mutex
	queue   []*sendReq
	stopped bool
}

// start starts the workers; stop stops them.
func (q *sendQueue) start(b *Broker) {
	q.b = b
	q.wake = make(chan struct{}, 1)
	q.quit = make(chan struct{})
	for range sendWorkers {
		q.wg.Go(q.run)
	}
}

// stop fails the Sends still queued and waits for the workers to return.
func (q *sendQueue) stop() {
	close(q.quit)
	q.wg.Wait()
}

// send queues one message and waits for the outcome of its batch.
func (q *sendQueue) send(ctx context.Context, id string, data []byte) error {
	r, _ := q.reqs.Get().(*sendReq)
	if r == nil {
		r = &sendReq{done: make(chan error, 1)}
	}
	r.ctx, r.id, r.data = ctx, id, data
	q.mu.Lock()
	if q.stopped {
		q.mu.Unlock()
		return fmt.Errorf("redis: send to %s: %w", id, broker.ErrClosed)
	}
	q.queue = append(q.queue, r)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	err := <-r.done
	r.ctx, r.data = nil, nil
	q.reqs.Put(r)
	return err
}

// run sends the queued messages until stop, then fails those still
// queued.
func (q *sendQueue) run() {
	batch := make([]*sendReq, 0, maxSendBatch)
	args := make([]string, 0, 2+2*maxSendBatch)
	for {
		select {
		case <-q.wake:
			// Another worker may have work too.
			q.mu.Lock()
			more := len(q.queue) > maxSendBatch
			q.mu.Unlock()
			if more {
				select {
				case q.wake <- struct{}{}:
				default:
				}
			}
		case <-q.quit:
			q.mu.Lock()
			q.stopped = true
			left := q.queue
			q.queue = nil
			q.mu.Unlock()
			for _, r := range left {
				r.done <- fmt.Errorf("redis: send to %s: %w", r.id, broker.ErrClosed)
			}
			return
		}
		for {
			q.mu.Lock()
			n := min(len(q.queue), maxSendBatch)
			batch = append(batch[:0], q.queue[:n]...)
			rest := copy(q.queue, q.queue[n:])
			clear(q.queue[rest:])
			q.queue = q.queue[:rest]
			q.mu.Unlock()
			if n == 0 {
				break
			}
			args = q.sendBatch(batch, args)
		}
	}
}

// sendBatch runs the send script for batch and answers each of its Sends.
func (q *sendQueue) sendBatch(batch []*sendReq, args []string) []string {
	b := q.b
	args = append(args[:0], b.cfg.Prefix, b.sizeArg, b.bytesArg)
	live := batch[:0]
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.done <- fmt.Errorf("redis: send to %s: %w", r.id, err)
			continue
		}
		args = append(args, r.id, string(r.data))
		live = append(live, r)
	}
	if len(live) == 0 {
		return args
	}
	// Not the Broker's context: Close lets the batch under way finish.
	ctx, cancel := context.WithTimeout(context.Background(), sendTimeout)
	res, err := b.exec(ctx, b.lua.send, args...).AsIntSlice()
	cancel()
	if err == nil && len(res) != len(live) {
		err = fmt.Errorf("send script answered %d statuses for %d messages", len(res), len(live))
	}
	for i, r := range live {
		switch {
		case err != nil:
			r.done <- b.fail("send to "+r.id, err)
		case res[i] == 0:
			r.done <- fmt.Errorf("redis: send to %s: %w", r.id, broker.ErrUnknownClient)
		default:
			r.done <- nil
		}
	}
	clear(args)
	return args[:0]
}
