// bench_go: the grpc-go peer of the benchmark, an echo server and a client,
// written the way grpc-go's own examples are (a goroutine per stream on the
// server; on the client one goroutine sends while another receives).
//
//	bench_go --mode server [--address 127.0.0.1:0]
//	bench_go --mode client --target HOST:PORT --workload single|pingpong|streams|idle
//	         [--messages N] [--streams S] [--channels C] [--checkpoint K]
//	         [--timeout-s T] [--sync]
//
// The server answers each ChatMessage with "<name>: <message>" and ends the
// stream OK when the client half-closes. It prints {"port": N, "pid": P} once
// listening and stops when its stdin reaches EOF or on SIGTERM/SIGINT.
//
// The client runs the workloads of bench_grpc_client with the same output:
// every reply is checked to be exactly "bench: <message>", in order; one JSON
// line with the result. Exit codes: 0 ok, 1 wrong reply or failed call,
// 2 usage, 3 timed out. With --sync it prints {"sync": "start"} just before
// its clock starts and {"sync": "stop"} once every measured stream has ended,
// and each time waits for a line on stdin, so the driver can read the
// server's CPU time over exactly the measured interval.
//
// idle: opens S streams (over C connections), one confirmed message each,
// prints {"ready": true, "streams": S, "channels": C} and waits for a line on
// stdin, then half-closes them all and checks they end OK. With --checkpoint
// K it first stops the same way at K streams.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sort"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"libchat/chatpb" // generated from proto/chat.proto at build time
)

var (
	mode       = flag.String("mode", "", "server or client")
	address    = flag.String("address", "127.0.0.1:0", "server: address to listen on")
	target     = flag.String("target", "", "client: server address HOST:PORT")
	workload   = flag.String("workload", "", "client: single, pingpong, streams or idle")
	messages   = flag.Uint64("messages", 10000, "messages (per stream for streams)")
	numStreams = flag.Int("streams", 1000, "streams for streams and idle")
	channels   = flag.Int("channels", 1, "idle: connections the streams are spread over")
	checkpoint = flag.Int("checkpoint", 0, "idle: also stop after this many streams")
	timeoutS   = flag.Int("timeout-s", 60, "client: time limit of the whole run")
	syncFlag   = flag.Bool("sync", false, "client: handshake on stdin around the measured interval")
)

// ---------------------------------------------------------------------------
// Server

type echo struct{ chatpb.UnimplementedChatServer }

func (echo) Chat(stream chatpb.Chat_ChatServer) error {
	for {
		in, err := stream.Recv()
		if err == io.EOF {
			return nil // the client half-closed: end the stream OK
		}
		if err != nil {
			return err
		}
		if err := stream.Send(&wrapperspb.StringValue{Value: in.Name + ": " + in.Message}); err != nil {
			return err
		}
	}
}

func serve() int {
	lis, err := net.Listen("tcp", *address)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench_go: %v\n", err)
		return 1
	}
	s := grpc.NewServer()
	chatpb.RegisterChatServer(s, echo{})
	fmt.Printf("{\"port\": %d, \"pid\": %d}\n", lis.Addr().(*net.TCPAddr).Port, os.Getpid())

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		io.Copy(io.Discard, os.Stdin) // EOF: the driver closed stdin, or died
		stop <- syscall.SIGTERM
	}()
	served := make(chan error, 1)
	go func() { served <- s.Serve(lis) }()
	select {
	case err := <-served:
		fmt.Fprintf(os.Stderr, "bench_go: serve: %v\n", err)
		return 1
	case <-stop:
	}
	// Let open streams finish for up to 2 s, then cut them.
	timer := time.AfterFunc(2*time.Second, s.Stop)
	s.GracefulStop()
	timer.Stop()
	return 0
}

// ---------------------------------------------------------------------------
// Client

var failMu sync.Mutex

// fail reports the first failure (from whichever goroutine) and exits.
func fail(code int, format string, args ...interface{}) {
	failMu.Lock() // never released: one report, then exit
	fmt.Fprintf(os.Stderr, "bench_go: "+format+"\n", args...)
	what := "wrong reply or failed call"
	if code == 3 {
		what = "timeout"
	}
	fmt.Printf("{\"error\": %q}\n", what)
	os.Exit(code)
}

// message i: "m" + i in 15 digits, as in bench_util.h; unique per index, so a
// reply out of order or from another stream cannot pass the check.
func message(i uint64) string {
	var b [16]byte
	b[0] = 'm'
	for k := 15; k >= 1; k-- {
		b[k] = byte('0' + i%10)
		i /= 10
	}
	return string(b[:])
}

func open(c chatpb.ChatClient) chatpb.Chat_ChatClient {
	s, err := c.Chat(context.Background())
	if err != nil {
		fail(1, "open: %v", err)
	}
	return s
}

func send(s chatpb.Chat_ChatClient, i uint64) {
	if err := s.Send(&chatpb.ChatMessage{Name: "bench", Message: message(i)}); err != nil {
		fail(1, "send #%d: %v", i, err)
	}
}

// sendRange sends messages first..first+count-1, then half-closes.
func sendRange(s chatpb.Chat_ChatClient, first, count uint64) {
	for i := first; i < first+count; i++ {
		send(s, i)
	}
	if err := s.CloseSend(); err != nil {
		fail(1, "half-close: %v", err)
	}
}

// recvChecked takes replies first..first+count-1 and checks each one.
func recvChecked(s chatpb.Chat_ChatClient, first, count uint64) {
	for i := first; i < first+count; i++ {
		r, err := s.Recv()
		if err != nil {
			fail(1, "reply #%d: %v", i, err)
		}
		if r.Value != "bench: "+message(i) {
			fail(1, "wrong reply #%d: %q", i, r.Value)
		}
	}
}

// expectEnd: after the last reply the server ends the stream OK.
func expectEnd(s chatpb.Chat_ChatClient) {
	r, err := s.Recv()
	if err == nil {
		fail(1, "extra reply %q", r.Value)
	}
	if err != io.EOF {
		fail(1, "end of stream: %v", err)
	}
}

var stdin = bufio.NewReader(os.Stdin)

// waitForLine prints a JSON line and waits for the driver's line on stdin.
func waitForLine(format string, args ...interface{}) {
	fmt.Printf(format+"\n", args...)
	stdin.ReadString('\n') // a line or EOF: go on either way
}

func syncPoint(what string) {
	if *syncFlag {
		waitForLine("{\"sync\": %q}", what)
	}
}

// pingpong: send one, wait for its reply, repeat; round trips in µs.
func pingpong(c chatpb.ChatClient, count uint64, rtt []float64) {
	s := open(c)
	for i := uint64(0); i < count; i++ {
		t0 := time.Now()
		send(s, i)
		recvChecked(s, i, 1)
		if rtt != nil {
			rtt[i] = float64(time.Since(t0).Nanoseconds()) / 1e3
		}
	}
	if err := s.CloseSend(); err != nil {
		fail(1, "half-close: %v", err)
	}
	expectEnd(s)
}

// percentile: nearest rank over sorted values, as in bench_util.h.
func percentile(v []float64, pct int) float64 {
	rank := (pct*len(v) + 99) / 100
	if rank < 1 {
		rank = 1
	}
	if rank > len(v) {
		rank = len(v)
	}
	return v[rank-1]
}

func dial(ctx context.Context) *grpc.ClientConn {
	conn, err := grpc.DialContext(ctx, *target, grpc.WithInsecure(), grpc.WithBlock())
	if err != nil {
		fail(1, "cannot connect to %s: %v", *target, err)
	}
	return conn
}

func runClient() int {
	timeout := time.Duration(*timeoutS) * time.Second
	time.AfterFunc(timeout, func() { fail(3, "timed out") })
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var clients []chatpb.ChatClient // one per connection
	nconn := 1
	if *workload == "idle" && *channels > 1 {
		nconn = *channels
	}
	for k := 0; k < nconn; k++ {
		clients = append(clients, chatpb.NewChatClient(dial(ctx)))
	}
	c := clients[0]
	n := *messages

	switch *workload {
	case "pingpong":
		pingpong(c, 200, nil) // warm-up: connection, allocator, caches
		rtt := make([]float64, n)
		syncPoint("start")
		pingpong(c, n, rtt)
		syncPoint("stop")
		sum := 0.0
		for _, v := range rtt {
			sum += v
		}
		sort.Float64s(rtt)
		fmt.Printf("{\"workload\": \"pingpong\", \"round_trips\": %d, \"p50_us\": %.2f, "+
			"\"p99_us\": %.2f, \"mean_us\": %.2f}\n",
			n, percentile(rtt, 50), percentile(rtt, 99), sum/float64(n))

	case "single":
		pingpong(c, 200, nil)
		s := open(c)
		syncPoint("start")
		t0 := time.Now()
		go sendRange(s, 0, n)
		recvChecked(s, 0, n)
		secs := time.Since(t0).Seconds()
		expectEnd(s)
		syncPoint("stop")
		fmt.Printf("{\"workload\": \"single\", \"messages\": %d, \"seconds\": %.6f, "+
			"\"msgs_per_s\": %.1f}\n", n, secs, float64(n)/secs)

	case "streams":
		// Every stream answers one message before the clock starts, so the
		// figure is about traffic on open streams, not about opening them.
		streams := make([]chatpb.Chat_ChatClient, *numStreams)
		for k := range streams {
			streams[k] = open(c)
			send(streams[k], 0)
		}
		for _, s := range streams {
			recvChecked(s, 0, 1)
		}
		syncPoint("start")
		t0 := time.Now()
		last := make([]time.Duration, len(streams)) // each stream's last reply
		var wg sync.WaitGroup
		for k, s := range streams {
			wg.Add(1)
			go sendRange(s, 1, n)
			go func(k int, s chatpb.Chat_ChatClient) {
				defer wg.Done()
				recvChecked(s, 1, n)
				last[k] = time.Since(t0)
				expectEnd(s)
			}(k, s)
		}
		wg.Wait()
		syncPoint("stop")
		secs := 0.0
		for _, d := range last {
			if d.Seconds() > secs {
				secs = d.Seconds()
			}
		}
		fmt.Printf("{\"workload\": \"streams\", \"streams\": %d, \"messages_per_stream\": %d, "+
			"\"seconds\": %.6f, \"msgs_per_s\": %.1f}\n",
			len(streams), n, secs, float64(n)*float64(len(streams))/secs)

	case "idle":
		var streams []chatpb.Chat_ChatClient
		stops := []int{*numStreams}
		if *checkpoint > 0 && *checkpoint < *numStreams {
			stops = []int{*checkpoint, *numStreams}
		}
		for _, upto := range stops {
			from := len(streams)
			for len(streams) < upto {
				s := open(clients[len(streams)%nconn])
				send(s, 0)
				streams = append(streams, s)
			}
			for _, s := range streams[from:] {
				recvChecked(s, 0, 1)
			}
			waitForLine("{\"ready\": true, \"streams\": %d, \"channels\": %d}", upto, nconn)
		}
		for _, s := range streams {
			if err := s.CloseSend(); err != nil {
				fail(1, "half-close: %v", err)
			}
		}
		for _, s := range streams {
			expectEnd(s)
		}
		fmt.Printf("{\"workload\": \"idle\", \"closed\": %d}\n", len(streams))
	}
	return 0
}

func main() {
	// Never outlive the driver.
	syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0)
	flag.Parse()
	known := map[string]bool{"single": true, "pingpong": true, "streams": true, "idle": true}
	switch {
	case *mode == "server" && flag.NArg() == 0:
		os.Exit(serve())
	case *mode == "client" && flag.NArg() == 0 && *target != "" && known[*workload] &&
		*messages > 0 && *numStreams > 0 && *timeoutS > 0:
		os.Exit(runClient())
	}
	flag.Usage()
	os.Exit(2)
}
