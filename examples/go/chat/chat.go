// Package chat drives libchat's /Chat/chat client streams from Go through
// libchat's event queue (capi/include/libchat/chat.h, "Event queue").
//
// Why the queue: the blocking C calls (chat_stream_recv with no timeout)
// each hold an OS thread while they wait, because a goroutine inside a cgo
// call keeps its thread. A goroutine per stream blocked in chat_stream_recv
// therefore costs one thread per stream, and around 10,000 streams the Go
// runtime stops the process ("fatal error: thread exhaustion"; its default
// limit is debug.SetMaxThreads(10000)). Here every stream of a Client
// delivers its replies, its end and its WRITABLE notices to one chat_queue;
// one goroutine drains it (the only call that waits inside C) and hands each
// event to its stream's Go side. Every other C call made here returns at once
// (sends use timeout 0), so goroutines wait on Go channels, which cost no
// thread, and the process keeps a small, constant number of threads however
// many streams are open.
//
// cgo rules kept: no Go pointer is ever stored by C. A stream's
// chat_stream_options.user_data is an integer id (never a Go pointer, and
// not a cgo.Handle either: an id that is no longer in the map is simply
// ignored, where a deleted cgo.Handle panics). Strings go to C for the
// duration of a call only (_GoString_, which C copies before returning) or
// as C copies freed after the call (the target). Event texts are copied into
// Go strings before the next drain. No C code calls back into Go.
//
// Build: cgo needs CGO_CFLAGS=-I<repo>/capi/include and
// CGO_LDFLAGS="-L<dir of libchat.so> -Wl,-rpath,<that dir>"; the package adds
// -lchat itself (examples/go/README.md).
package chat

// #cgo LDFLAGS: -lchat
// #include <libchat/chat.h>
import "C"

// Code is a chat_code: a gRPC status code (0..16) that a peer or the
// transport reported, or a local outcome of a call (17 and up).
type Code int32

// The codes, as chat.h numbers them.
const (
	OK                 Code = C.CHAT_OK
	Cancelled          Code = C.CHAT_CANCELLED
	Unknown            Code = C.CHAT_UNKNOWN
	InvalidArgument    Code = C.CHAT_INVALID_ARGUMENT
	DeadlineExceeded   Code = C.CHAT_DEADLINE_EXCEEDED
	NotFound           Code = C.CHAT_NOT_FOUND
	AlreadyExists      Code = C.CHAT_ALREADY_EXISTS
	PermissionDenied   Code = C.CHAT_PERMISSION_DENIED
	ResourceExhausted  Code = C.CHAT_RESOURCE_EXHAUSTED
	FailedPrecondition Code = C.CHAT_FAILED_PRECONDITION
	Aborted            Code = C.CHAT_ABORTED
	OutOfRange         Code = C.CHAT_OUT_OF_RANGE
	Unimplemented      Code = C.CHAT_UNIMPLEMENTED
	Internal           Code = C.CHAT_INTERNAL
	Unavailable        Code = C.CHAT_UNAVAILABLE
	DataLoss           Code = C.CHAT_DATA_LOSS
	Unauthenticated    Code = C.CHAT_UNAUTHENTICATED

	ErrBadArgument  Code = C.CHAT_ERR_BAD_ARGUMENT
	ErrWouldBlock   Code = C.CHAT_ERR_WOULD_BLOCK
	ErrTimeout      Code = C.CHAT_ERR_TIMEOUT
	EndOfStream     Code = C.CHAT_END_OF_STREAM
	ErrClosed       Code = C.CHAT_ERR_CLOSED
	ErrBusy         Code = C.CHAT_ERR_BUSY
	ErrNoMemory     Code = C.CHAT_ERR_NO_MEMORY
	ErrTooLarge     Code = C.CHAT_ERR_TOO_LARGE
	ErrBadState     Code = C.CHAT_ERR_BAD_STATE
	ErrMissing      Code = C.CHAT_ERR_MISSING
	ErrCannotListen Code = C.CHAT_ERR_CANNOT_LISTEN
	ErrSystem       Code = C.CHAT_ERR_SYSTEM
	ErrLibraryBug   Code = C.CHAT_ERR_LIBRARY_BUG
)

// String is the code's name as chat_code_name spells it ("OK",
// "DEADLINE_EXCEEDED", "WOULD_BLOCK").
func (c Code) String() string {
	return C.GoString(C.chat_code_name(C.chat_code(c))) // static storage: nothing to free
}

// Error is a failed call or a stream's final status other than OK.
type Error struct {
	Code    Code
	Message string // the library's message, or the status details
}

func (e *Error) Error() string {
	if e.Message == "" {
		return "chat: " + e.Code.String()
	}
	return "chat: " + e.Code.String() + ": " + e.Message
}

// Is makes errors.Is(err, &chat.Error{Code: chat.Unavailable}) match any
// message of that code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && (t.Message == "" || t.Message == e.Message)
}

// Version is the loaded library's version string ("1.0.0").
func Version() string { return C.GoString(C.chat_version()) }
