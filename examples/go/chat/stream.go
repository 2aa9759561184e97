package chat

/*
#include <libchat/chat.h>

// Sends Go strings without copying them first: C reads them during the call
// only (chat_stream_send copies before it returns), which is what cgo allows.
static chat_code go_stream_send(chat_stream *s, _GoString_ name, _GoString_ message) {
  return chat_stream_send(s, _GoStringPtr(name), _GoStringLen(name), _GoStringPtr(message),
                          _GoStringLen(message), 0);
}
*/
import "C"

import (
	"context"
	"io"
	"sync"
)

// Stream is one /Chat/chat call. Send, Complete and Cancel may be called
// from any goroutine; Recv from one goroutine at a time (as in grpc-go).
//
// A stream needs no closing: its C handle is released as soon as its end
// has been delivered. Cancel a stream you abandon, or close the Client.
type Stream struct {
	client *Client
	id     uint64

	// hmu guards h: C calls on the stream hold it for reading (they never
	// wait inside C); releasing the handle holds it for writing.
	hmu sync.RWMutex
	h   *C.chat_stream // nil once released

	mu       sync.Mutex
	replies  []string      // received, not yet taken by Recv
	ready    chan struct{} // a token when replies or the end arrived
	writable chan struct{} // closed (and replaced) on each WRITABLE
	done     chan struct{} // closed at the end
	ended    bool
	code     Code
	details  string

	pumpOnce sync.Once
	pump     chan string
}

func newStream(c *Client, id uint64) *Stream {
	return &Stream{
		client:   c,
		id:       id,
		ready:    make(chan struct{}, 1),
		writable: make(chan struct{}),
		done:     make(chan struct{}),
	}
}

// errClosed is what calls on a stream that has ended get.
func errClosed() error { return &Error{Code: ErrClosed, Message: "stream has ended"} }

// Send queues one ChatMessage{name, message}. When the stream's send queue
// is full it waits, without holding a thread, for the stream's WRITABLE
// event, the end of the stream or ctx, and tries again: libchat is only
// ever called with timeout 0. A ctx that is done already fails it at once.
// On error nothing was queued; an *Error with ErrClosed means the stream
// no longer takes messages (Recv or Wait tell why it ended).
func (s *Stream) Send(ctx context.Context, name, message string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for {
		s.mu.Lock()
		writable := s.writable // taken before trying: a WRITABLE that comes after the refusal closes it
		s.mu.Unlock()
		code, msg := s.trySend(name, message)
		switch code {
		case OK:
			return nil
		case ErrWouldBlock:
			s.client.refused.Add(1)
			select {
			case <-writable:
			case <-s.done: // the next try reports the end
			case <-ctx.Done():
				return ctx.Err()
			}
		default:
			return &Error{Code: code, Message: msg}
		}
	}
}

func (s *Stream) trySend(name, message string) (Code, string) {
	s.hmu.RLock()
	defer s.hmu.RUnlock()
	if s.h == nil {
		return ErrClosed, "stream has ended"
	}
	enterC()
	code := Code(C.go_stream_send(s.h, name, message))
	exitC()
	if code == OK || code == ErrWouldBlock {
		return code, ""
	}
	return code, s.errorTextLocked()
}

// Complete half-closes the stream: no more messages follow the queued ones.
// Replies keep arriving. Idempotent.
func (s *Stream) Complete() error {
	s.hmu.RLock()
	defer s.hmu.RUnlock()
	if s.h == nil {
		return errClosed()
	}
	enterC()
	code := Code(C.chat_stream_complete(s.h))
	exitC()
	if code != OK {
		return &Error{Code: code, Message: s.errorTextLocked()}
	}
	return nil
}

// Cancel cancels the call: the server sees a cancellation and the stream
// ends with Cancelled (unless it had ended already). Replies received
// before stay readable. Idempotent, never blocks.
func (s *Stream) Cancel() {
	s.hmu.RLock()
	defer s.hmu.RUnlock()
	if s.h != nil {
		enterC()
		C.chat_stream_cancel(s.h) // CHAT_ERR_CLOSED when it had ended: nothing to do
		exitC()
	}
}

// Recv returns the next reply. At the end it returns io.EOF when the stream
// ended OK, or an *Error with the final status code and details (after the
// replies received before it). It waits for ctx too.
func (s *Stream) Recv(ctx context.Context) (string, error) {
	for {
		s.mu.Lock()
		if len(s.replies) > 0 {
			r := s.replies[0]
			s.replies[0] = ""
			s.replies = s.replies[1:]
			if len(s.replies) == 0 {
				s.replies = nil // let the backing array go
			}
			s.mu.Unlock()
			return r, nil
		}
		if s.ended {
			err := s.statusLocked()
			s.mu.Unlock()
			if err == nil {
				return "", io.EOF
			}
			return "", err
		}
		s.mu.Unlock()
		select {
		case <-s.ready:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// Replies returns a channel that yields the stream's replies in order and
// is closed at its end (then Wait gives the final status). It is an
// alternative to Recv, not to be mixed with it: read it to the end (or
// close the Client), or its goroutine stays blocked.
func (s *Stream) Replies() <-chan string {
	s.pumpOnce.Do(func() {
		s.pump = make(chan string)
		go func() {
			defer close(s.pump)
			for {
				r, err := s.Recv(context.Background())
				if err != nil {
					return
				}
				select {
				case s.pump <- r:
				case <-s.client.closed:
					return
				}
			}
		}()
	})
	return s.pump
}

// Done is closed when the stream has ended (its final status is known).
func (s *Stream) Done() <-chan struct{} { return s.done }

// Wait waits for the end of the stream and returns its final status: nil
// when it ended OK, else an *Error with the gRPC code and the details.
func (s *Stream) Wait(ctx context.Context) error {
	select {
	case <-s.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.statusLocked()
}

func (s *Stream) statusLocked() error {
	if s.code == OK {
		return nil
	}
	return &Error{Code: s.code, Message: s.details}
}

// --- called by the Client's drain goroutine ---

func (s *Stream) pushReply(text string) {
	s.mu.Lock()
	s.replies = append(s.replies, text)
	s.mu.Unlock()
	s.notify()
}

func (s *Stream) notify() {
	select {
	case s.ready <- struct{}{}:
	default: // a token is there already
	}
}

func (s *Stream) signalWritable() {
	s.mu.Lock()
	close(s.writable)
	s.writable = make(chan struct{})
	s.mu.Unlock()
}

// release destroys the C handle (once). After the stream's END that never
// waits: chat_stream_destroy then has nothing left to cancel.
func (s *Stream) release() {
	s.hmu.Lock()
	defer s.hmu.Unlock()
	if s.h != nil {
		C.chat_stream_destroy(s.h)
		s.h = nil
	}
}

// end records the final status (once) and wakes every waiter.
func (s *Stream) end(code Code, details string) {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	s.ended, s.code, s.details = true, code, details
	close(s.done)
	s.mu.Unlock()
	s.notify()
}

// errorTextLocked is the stream's last failure (chat_stream_error); hmu is held.
func (s *Stream) errorTextLocked() string {
	return handleError(func(buf *C.char, size C.size_t) C.size_t {
		return C.chat_stream_error(s.h, buf, size)
	})
}
