// chat_client (Go): drives /Chat/chat through libchat's event queue.
//
//	go_chat_client [--target HOST:PORT] [--timeout-s T]
//	go_chat_client --streams N [--messages M] [--connections C] [--send-queue-limit L]
//	               [--target HOST:PORT] [--timeout-s T]
//
// Without --streams it runs the seed, like examples/chat_client.c: sends
// Sam/Hi, Ann/Hey, John/Hello, half-closes and prints each reply as it
// arrives ("Sam: Hi", "Ann: Hey", "John: Hello"). It exits 0 when the stream
// ends OK, else prints "chat_client: CODE: details" on stderr and exits 1.
//
// With --streams N it runs N streams at once, a goroutine each, over one
// client: one event queue, one drain goroutine, and C HTTP/2 connections
// (default: one per 4,096 streams, since a libchat server with default
// options closes a connection that has more than 8,192 streams alive at
// once). Stream i sends M messages "0".."M-1" from "s<i>", half-closes, and
// checks that its replies are exactly "s<i>: 0".."s<i>: M-1" in that order
// and that it ended OK. Every stream waits after its first reply until all
// N have had theirs, so all N are open at the same time. Then it prints
// one line:
//
//	N streams open at once over C connection(s), M messages each: R replies in order, every stream ended OK; peak T threads; S sends waited for WRITABLE; X.XX s
//
// where T is the most OS threads the process had (Threads: in
// /proc/self/status, sampled every millisecond through the run). It exits 1
// when any stream failed, after printing the first few failures.
//
// The contrast: a goroutine per stream blocked in chat_stream_recv(-1) holds
// an OS thread for as long as it waits (a goroutine inside a cgo call keeps
// its thread, and the runtime starts another for the goroutines that can
// run). N such streams take N threads; near 10,000 the Go runtime aborts the
// process with "fatal error: thread exhaustion" (debug.SetMaxThreads). Here
// only the client's drain goroutine waits inside C; the streams' goroutines
// wait on channels, and the thread count stays small and flat.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"libchat/examples/go/chat"
)

var (
	target         = flag.String("target", "localhost:9090", "server: host:port or http://host:port")
	numStreams     = flag.Int("streams", 0, "open this many streams at once and check their replies (0: the seed)")
	messages       = flag.Int("messages", 2, "with --streams: messages per stream")
	connections    = flag.Int("connections", 0, "with --streams: HTTP/2 connections (0: one per 4096 streams)")
	sendQueueLimit = flag.Int("send-queue-limit", 0, "messages queued per stream before Send waits for WRITABLE (0: libchat's default)")
	timeoutS       = flag.Int("timeout-s", 60, "time limit of the whole run, in seconds")
)

func main() {
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: %s [--target HOST:PORT] [--streams N [--messages M] "+
			"[--connections C] [--send-queue-limit L]] [--timeout-s T]\n", os.Args[0])
	}
	flag.Parse()
	if flag.NArg() != 0 || *numStreams < 0 || *messages < 0 || *connections < 0 ||
		*sendQueueLimit < 0 || *timeoutS <= 0 {
		flag.Usage()
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(*timeoutS)*time.Second)
	defer cancel()
	conns := *connections
	if conns == 0 {
		conns = (*numStreams + 4095) / 4096
	}
	client, err := chat.NewClient(*target, &chat.ClientOptions{
		SendQueueLimit: *sendQueueLimit,
		Connections:    conns,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "chat_client: %v\n", err)
		os.Exit(1)
	}
	var status int
	if *numStreams == 0 {
		status = seed(ctx, client)
	} else {
		status = manyStreams(ctx, client, *numStreams, *messages, conns)
	}
	client.Close()
	os.Exit(status)
}

// seed sends the three seed messages while another goroutine prints the
// replies as they arrive.
func seed(ctx context.Context, client *chat.Client) int {
	s, err := client.Open(nil)
	if err != nil {
		fmt.Fprintf(os.Stderr, "chat_client: %v\n", err)
		return 1
	}
	printed := make(chan struct{})
	go func() {
		defer close(printed)
		for reply := range s.Replies() {
			fmt.Println(reply)
		}
	}()
	for _, m := range [][2]string{{"Sam", "Hi"}, {"Ann", "Hey"}, {"John", "Hello"}} {
		if s.Send(ctx, m[0], m[1]) != nil {
			break // the final status tells why
		}
	}
	s.Complete()
	err = s.Wait(ctx)
	if err == nil {
		select {
		case <-printed:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	if err != nil {
		var ce *chat.Error
		if errors.As(err, &ce) {
			fmt.Fprintf(os.Stderr, "chat_client: %s: %s\n", ce.Code, ce.Message)
		} else {
			fmt.Fprintf(os.Stderr, "chat_client: %v\n", err)
		}
		return 1
	}
	return 0
}

// manyStreams runs n streams of m messages each at once; see the top.
func manyStreams(ctx context.Context, client *chat.Client, n, m, conns int) int {
	sampler := startThreadSampler()
	start := time.Now()
	var (
		wg       sync.WaitGroup
		open     sync.WaitGroup // every stream has had its first reply (or failed)
		allOpen  = make(chan struct{})
		replies  atomic.Int64
		failures atomic.Int64
		mu       sync.Mutex
		first    []string // the first few failures
	)
	open.Add(n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			got, err := oneStream(ctx, client, i, m, open.Done, allOpen)
			replies.Add(int64(got))
			if err != nil {
				failures.Add(1)
				mu.Lock()
				if len(first) < 5 {
					first = append(first, fmt.Sprintf("stream %d: %v", i, err))
				}
				mu.Unlock()
			}
		}(i)
	}
	open.Wait()
	close(allOpen)
	wg.Wait()
	elapsed := time.Since(start)
	peak := sampler.stop()
	if f := failures.Load(); f > 0 {
		for _, line := range first {
			fmt.Fprintf(os.Stderr, "chat_client: %s\n", line)
		}
		fmt.Fprintf(os.Stderr, "chat_client: %d of %d streams failed; peak %d threads\n", f, n, peak)
		return 1
	}
	plural := "s"
	if conns == 1 {
		plural = ""
	}
	fmt.Printf("%d streams open at once over %d connection%s, %d messages each: %d replies in "+
		"order, every stream ended OK; peak %d threads; %d sends waited for WRITABLE; %.2f s\n",
		n, conns, plural, m, replies.Load(), peak, client.Stats().SendsRefused, elapsed.Seconds())
	return 0
}

// oneStream opens stream i, sends its first message and waits for the
// reply: then the server has the stream open too. It reports that with
// opened (exactly once, also when it fails first) and waits for allOpen,
// so that all n streams are open at once. Then it sends the rest,
// half-closes, and checks the replies and the end. It returns how many
// replies were right.
func oneStream(ctx context.Context, client *chat.Client, i, m int, opened func(),
	allOpen <-chan struct{}) (int, error) {
	var once sync.Once
	arrive := func() { once.Do(opened) }
	defer arrive()
	s, err := client.Open(nil)
	if err != nil {
		return 0, err
	}
	defer s.Cancel() // a no-op once it ended; ends it on an early return
	name := "s" + strconv.Itoa(i)
	good := 0
	for j := 0; j < m; j++ {
		if err := s.Send(ctx, name, strconv.Itoa(j)); err != nil {
			if errors.Is(err, &chat.Error{Code: chat.ErrClosed}) {
				if status := s.Wait(ctx); status != nil {
					err = status // why it ended
				}
			}
			return good, fmt.Errorf("send %d: %w", j, err)
		}
		if j == 0 {
			if err := expectReply(ctx, s, name, 0); err != nil {
				return good, err
			}
			good++
			arrive()
			select {
			case <-allOpen:
			case <-ctx.Done():
				return good, ctx.Err()
			}
		}
	}
	arrive()
	if err := s.Complete(); err != nil {
		return good, fmt.Errorf("complete: %w", err)
	}
	for ; good < m; good++ {
		if err := expectReply(ctx, s, name, good); err != nil {
			return good, err
		}
	}
	if reply, err := s.Recv(ctx); err != io.EOF {
		if err == nil {
			err = fmt.Errorf("unexpected reply %q after the last", reply)
		}
		return good, fmt.Errorf("end: %w", err)
	}
	return good, nil
}

// expectReply checks that the next reply is "<name>: <j>".
func expectReply(ctx context.Context, s *chat.Stream, name string, j int) error {
	reply, err := s.Recv(ctx)
	if err != nil {
		return fmt.Errorf("reply %d: %w", j, err)
	}
	if want := name + ": " + strconv.Itoa(j); reply != want {
		return fmt.Errorf("reply %d: got %q, want %q", j, reply, want)
	}
	return nil
}

// threadSampler reads the process's thread count (Threads: in
// /proc/self/status) every millisecond and keeps the highest.
type threadSampler struct {
	quit chan struct{}
	peak chan int
}

func startThreadSampler() *threadSampler {
	t := &threadSampler{quit: make(chan struct{}), peak: make(chan int)}
	go func() {
		peak := threads()
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				if n := threads(); n > peak {
					peak = n
				}
			case <-t.quit:
				if n := threads(); n > peak {
					peak = n
				}
				t.peak <- peak
				return
			}
		}
	}()
	return t
}

func (t *threadSampler) stop() int {
	close(t.quit)
	return <-t.peak
}

func threads() int {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if line := sc.Bytes(); bytes.HasPrefix(line, []byte("Threads:")) {
			n, _ := strconv.Atoi(string(bytes.TrimSpace(line[len("Threads:"):])))
			return n
		}
	}
	return 0
}
