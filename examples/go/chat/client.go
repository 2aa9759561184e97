package chat

/*
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <libchat/chat.h>

// The shims below run two C calls as one cgo call where the second reads
// thread-local state: a goroutine may move to another OS thread between two
// cgo calls, so chat_last_error() must be read in the same call as the
// failure it describes. (Calls on a live handle use the per-handle error
// functions instead, chat_stream_error and chat_client_error.)
static chat_code go_queue_create(chat_queue **out, char *err, size_t size) {
  chat_code rc = chat_queue_create(out);
  if (rc != CHAT_OK) snprintf(err, size, "%s", chat_last_error());
  return rc;
}

static chat_code go_client_create(const char *target, int32_t send_queue_limit,
                                  int32_t recv_queue_limit, chat_client **out, char *err,
                                  size_t size) {
  chat_client_options o;
  chat_client_options_init(&o, CHAT_CLIENT_OPTIONS_VERSION);
  if (send_queue_limit > 0) o.send_queue_limit = send_queue_limit;
  if (recv_queue_limit > 0) o.recv_queue_limit = recv_queue_limit;
  chat_code rc = chat_client_create(target, &o, out);
  if (rc != CHAT_OK) snprintf(err, size, "%s", chat_last_error());
  return rc;
}

// Opens a stream that delivers to `queue` with the integer `id` as its
// user_data. The options live on the C stack: a Go variable of a pointer
// type holding a small integer would upset Go's garbage collector ("invalid
// pointer found on stack").
static chat_code go_open(chat_client *client, chat_queue *queue, uintptr_t id,
                         int64_t deadline_ms, chat_stream **out) {
  chat_stream_options o;
  chat_stream_options_init(&o, CHAT_STREAM_OPTIONS_VERSION);
  o.deadline_ms = deadline_ms;
  o.queue = queue;
  o.user_data = (void *)id;
  return chat_client_open(client, &o, out);
}

// The id a stream's event carries, as an integer (see go_open).
static uintptr_t go_event_id(const chat_event *e) { return (uintptr_t)e->user_data; }
*/
import "C"

import (
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// batchSize is how many events one chat_queue_drain takes at most.
const batchSize = 256

// closeGrace bounds how long Close waits for the ends of the streams it
// cancelled (a cancelled call ends promptly; this is only a safety net).
const closeGrace = 10 * time.Second

// cSlots bounds how many goroutines are inside a libchat call at once
// (every such call but the drain returns at once, yet may wait briefly on a
// lock inside). A goroutine inside a cgo call keeps its OS thread, and when
// the call lasts more than about 20 µs the runtime starts another thread to
// run the other goroutines; with thousands of goroutines calling in at
// once, that alone made dozens of threads. Goroutines waiting for a slot
// wait on a channel, which takes no thread.
var cSlots = make(chan struct{}, runtime.GOMAXPROCS(0))

func enterC() { cSlots <- struct{}{} }
func exitC()  { <-cSlots }

// ClientOptions tune a Client; the zero value (or nil) means libchat's
// defaults.
type ClientOptions struct {
	SendQueueLimit int // messages queued per stream before Send waits (default 1024)
	RecvQueueLimit int // replies read ahead per stream before reading pauses (default 1024)
	// Connections spreads the streams over this many HTTP/2 connections
	// (chat_client handles), round robin; default 1. They share the
	// client's one event queue and drain goroutine. A libchat server closes
	// a connection that has more than max_memory_bytes / 2 / 16 KiB streams
	// alive at once (8,192 with its defaults), so many thousands of
	// concurrent streams need more than one.
	Connections int
}

// StreamOptions tune one stream; nil means no deadline.
type StreamOptions struct {
	Deadline time.Duration // the RPC deadline from now; 0: none
}

// Stats counts what happened on a Client's streams so far.
type Stats struct {
	SendsRefused   uint64 // sends that found the send queue full (and then waited)
	WritableEvents uint64 // WRITABLE events that woke such a send
}

// Client is one connection to a server (libchat opens it lazily, on the
// first stream) with its own event queue and the goroutine that drains it.
// Its methods are safe for concurrent use. Close it when done.
type Client struct {
	conns []*C.chat_client // streams go round robin over these
	q     *C.chat_queue
	batch *C.chat_event // C memory: chat_queue_drain writes C pointers into it

	mu       sync.Mutex
	streams  map[uint64]*Stream // open streams by id (their user_data)
	nextID   uint64             // also picks the connection
	closing  bool
	allGone  chan struct{} // closed once closing and no stream is left
	goneOnce sync.Once

	stop      atomic.Bool
	drained   chan struct{} // closed when the drain goroutine has returned
	closed    chan struct{} // closed by Close
	closeOnce sync.Once

	refused  atomic.Uint64
	writable atomic.Uint64
}

// NewClient creates a client for target ("host:port", "http://host:port",
// or any target chat_client_create takes) and starts the goroutine that
// drains its event queue. An unreachable server is not an error here: its
// streams end with Unavailable. Connections are opened lazily, on the first
// stream of each.
func NewClient(target string, opts *ClientOptions) (*Client, error) {
	if got := C.chat_abi_version(); got != C.CHAT_ABI_VERSION {
		return nil, &Error{Code: ErrBadState, Message: "libchat ABI mismatch: built against " +
			strconv.Itoa(int(C.CHAT_ABI_VERSION)) + ", loaded " + strconv.Itoa(int(got))}
	}
	var errbuf [256]C.char
	var q *C.chat_queue
	if rc := C.go_queue_create(&q, &errbuf[0], C.size_t(len(errbuf))); rc != C.CHAT_OK {
		return nil, &Error{Code: Code(rc), Message: C.GoString(&errbuf[0])}
	}
	var sendLimit, recvLimit C.int32_t
	conns := 1
	if opts != nil {
		sendLimit, recvLimit = C.int32_t(opts.SendQueueLimit), C.int32_t(opts.RecvQueueLimit)
		if opts.Connections > 1 {
			conns = opts.Connections
		}
	}
	ctarget := C.CString(target) // C copy, NUL-terminated: freed below
	defer C.free(unsafe.Pointer(ctarget))
	c := &Client{
		conns:   make([]*C.chat_client, 0, conns),
		q:       q,
		batch:   (*C.chat_event)(C.calloc(batchSize, C.sizeof_chat_event)),
		streams: make(map[uint64]*Stream),
		allGone: make(chan struct{}),
		drained: make(chan struct{}),
		closed:  make(chan struct{}),
	}
	var err error
	for len(c.conns) < conns && err == nil {
		var cl *C.chat_client
		if rc := C.go_client_create(ctarget, sendLimit, recvLimit, &cl, &errbuf[0],
			C.size_t(len(errbuf))); rc != C.CHAT_OK {
			err = &Error{Code: Code(rc), Message: C.GoString(&errbuf[0])}
		} else {
			c.conns = append(c.conns, cl)
		}
	}
	if err == nil && c.batch == nil {
		err = &Error{Code: ErrNoMemory, Message: "cannot allocate the event batch"}
	}
	if err != nil {
		for _, cl := range c.conns {
			C.chat_client_destroy(cl)
		}
		C.chat_queue_destroy(q)
		C.free(unsafe.Pointer(c.batch)) // free(NULL) is a no-op
		return nil, err
	}
	go c.drain()
	return c, nil
}

// Open opens a stream. It never blocks: a connection failure shows up as the
// stream's final status.
func (c *Client) Open(opts *StreamOptions) (*Stream, error) {
	deadline := int64(-1)
	if opts != nil && opts.Deadline > 0 {
		deadline = opts.Deadline.Milliseconds()
		if deadline == 0 {
			deadline = 1
		}
	}
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return nil, &Error{Code: ErrClosed, Message: "client is closed"}
	}
	c.nextID++
	s := newStream(c, c.nextID)
	// In the map before the C stream exists: its first events may be
	// drained before chat_client_open returns.
	c.streams[s.id] = s
	c.mu.Unlock()

	// The handle lock is held until s.h is set, so that an END drained
	// meanwhile waits for it before releasing the handle.
	s.hmu.Lock()
	defer s.hmu.Unlock()
	conn := c.conns[s.id%uint64(len(c.conns))]
	var h *C.chat_stream
	enterC()
	rc := C.go_open(conn, c.q, C.uintptr_t(s.id), C.int64_t(deadline), &h)
	exitC()
	if rc != C.CHAT_OK {
		err := &Error{Code: Code(rc), Message: handleError(func(buf *C.char, size C.size_t) C.size_t {
			return C.chat_client_error(conn, buf, size)
		})}
		c.forget(s.id)
		return nil, err
	}
	s.h = h
	c.mu.Lock()
	closing := c.closing
	c.mu.Unlock()
	if closing { // Close ran meanwhile and could not cancel this one
		enterC()
		C.chat_stream_cancel(h)
		exitC()
	}
	return s, nil
}

// Stats returns the client's counters.
func (c *Client) Stats() Stats {
	return Stats{SendsRefused: c.refused.Load(), WritableEvents: c.writable.Load()}
}

// Close cancels the streams still open, waits (boundedly) for their ends,
// stops the drain goroutine and frees the queue and the client. Blocked
// Send, Recv and Wait calls return. Safe to call more than once.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		close(c.closed)
		c.mu.Lock()
		c.closing = true
		open := make([]*Stream, 0, len(c.streams))
		for _, s := range c.streams {
			open = append(open, s)
		}
		c.checkGoneLocked()
		c.mu.Unlock()
		for _, s := range open {
			s.Cancel()
		}
		timer := time.NewTimer(closeGrace)
		select {
		case <-c.allGone:
		case <-timer.C:
		}
		timer.Stop()
		c.stop.Store(true)
		C.chat_queue_wake(c.q)
		<-c.drained
		// Nobody drains any more, so what is left (an end that did not
		// come in time) can be destroyed here without racing a drain.
		c.mu.Lock()
		left := make([]*Stream, 0, len(c.streams))
		for _, s := range c.streams {
			left = append(left, s)
		}
		c.mu.Unlock()
		for _, s := range left {
			s.release()
			s.end(Cancelled, "client closed before the stream ended")
			c.forget(s.id)
		}
		for _, cl := range c.conns {
			C.chat_client_destroy(cl)
		}
		C.chat_queue_destroy(c.q)
		C.free(unsafe.Pointer(c.batch))
	})
	return nil
}

// drain is the one goroutine that waits inside C: in chat_queue_drain with
// no time limit, until events come or Close wakes it.
func (c *Client) drain() {
	defer close(c.drained)
	events := unsafe.Slice(c.batch, batchSize)
	for !c.stop.Load() {
		var n C.size_t
		if rc := C.chat_queue_drain(c.q, -1, c.batch, batchSize, &n); rc != C.CHAT_OK {
			// Only for invalid arguments, which this code never passes.
			panic("chat: chat_queue_drain: " + Code(rc).String())
		}
		for i := range events[:n] {
			c.dispatch(&events[i])
		}
	}
}

// dispatch hands one event to its stream. Texts are copied into Go
// strings here: they are borrowed only until the next drain.
func (c *Client) dispatch(ev *C.chat_event) {
	if ev._type == C.CHAT_EVENT_WAKE {
		return // Close's wake-up: the loop checks c.stop
	}
	id := uint64(C.go_event_id(ev))
	c.mu.Lock()
	s := c.streams[id]
	c.mu.Unlock()
	if s == nil {
		return
	}
	switch ev._type {
	case C.CHAT_EVENT_REPLY:
		s.pushReply(C.GoStringN(ev.text, C.int(ev.text_len)))
	case C.CHAT_EVENT_WRITABLE:
		c.writable.Add(1)
		s.signalWritable()
	case C.CHAT_EVENT_END:
		// The stream's last event: release the C handle here, between two
		// drains. Destroying it while another thread drains is unsafe
		// (see README.md), and on this goroutine it never is.
		details := C.GoStringN(ev.text, C.int(ev.text_len))
		s.release()
		s.end(Code(ev.code), details)
		c.forget(id)
	}
}

func (c *Client) forget(id uint64) {
	c.mu.Lock()
	delete(c.streams, id)
	c.checkGoneLocked()
	c.mu.Unlock()
}

func (c *Client) checkGoneLocked() {
	if c.closing && len(c.streams) == 0 {
		c.goneOnce.Do(func() { close(c.allGone) })
	}
}

// handleError reads a per-handle error message through fill (one of the
// chat_*_error functions), growing the buffer when it was too small.
func handleError(fill func(buf *C.char, size C.size_t) C.size_t) string {
	var small [256]C.char
	n := fill(&small[0], C.size_t(len(small)))
	if n < C.size_t(len(small)) {
		return C.GoStringN(&small[0], C.int(n))
	}
	big := make([]C.char, n+1)
	if n = fill(&big[0], C.size_t(len(big))); n >= C.size_t(len(big)) {
		n = C.size_t(len(big)) - 1 // it grew meanwhile: keep what fits
	}
	return C.GoStringN(&big[0], C.int(n))
}
