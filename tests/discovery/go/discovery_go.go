// discovery_go: grpc-go's health and reflection clients against a libchat
// server, a second peer independent of grpcio and of protobuf's C++ code.
//
//	discovery_go HOST:PORT
//
// Prints the services listed, the health of "" and "Chat", and Chat.chat
// with ChatMessage's fields as described by the descriptors reflection
// serves (built into a registry with protodesc, as grpcurl does); exits 1
// with the error on stderr when a step fails.
package main

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
)

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "discovery_go: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	if len(os.Args) != 2 {
		fail("usage: discovery_go HOST:PORT")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := grpc.DialContext(ctx, os.Args[1], grpc.WithInsecure(), grpc.WithBlock())
	if err != nil {
		fail("dial: %v", err)
	}
	defer conn.Close()

	stream, err := rpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		fail("reflection: %v", err)
	}
	ask := func(req *rpb.ServerReflectionRequest) *rpb.ServerReflectionResponse {
		if err := stream.Send(req); err != nil {
			fail("send: %v", err)
		}
		resp, err := stream.Recv()
		if err != nil {
			fail("recv: %v", err)
		}
		if e := resp.GetErrorResponse(); e != nil {
			fail("error response %d: %s", e.ErrorCode, e.ErrorMessage)
		}
		return resp
	}

	var names []string
	list := ask(&rpb.ServerReflectionRequest{
		MessageRequest: &rpb.ServerReflectionRequest_ListServices{ListServices: ""}})
	for _, s := range list.GetListServicesResponse().GetService() {
		names = append(names, s.Name)
	}
	sort.Strings(names)
	fmt.Printf("services: %s\n", strings.Join(names, " "))

	health := healthpb.NewHealthClient(conn)
	for _, service := range []string{"", "Chat"} {
		r, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		if err != nil {
			fail("health %q: %v", service, err)
		}
		fmt.Printf("health %q: %s\n", service, r.Status)
	}

	file := ask(&rpb.ServerReflectionRequest{
		MessageRequest: &rpb.ServerReflectionRequest_FileContainingSymbol{
			FileContainingSymbol: "Chat"}})
	set := &descriptorpb.FileDescriptorSet{}
	for _, raw := range file.GetFileDescriptorResponse().GetFileDescriptorProto() {
		fd := &descriptorpb.FileDescriptorProto{}
		if err := proto.Unmarshal(raw, fd); err != nil {
			fail("file descriptor: %v", err)
		}
		set.File = append(set.File, fd)
	}
	files, err := protodesc.NewFiles(set)
	if err != nil {
		fail("building the files: %v", err)
	}
	d, err := files.FindDescriptorByName("Chat")
	if err != nil {
		fail("Chat: %v", err)
	}
	service, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		fail("Chat is not a service")
	}
	m := service.Methods().ByName("chat")
	if m == nil {
		fail("Chat has no method chat")
	}
	streaming := func(yes bool) string {
		if yes {
			return "stream "
		}
		return ""
	}
	fmt.Printf("rpc Chat.chat(%s%s) returns (%s%s)\n", streaming(m.IsStreamingClient()),
		m.Input().FullName(), streaming(m.IsStreamingServer()), m.Output().FullName())
	for _, message := range []protoreflect.MessageDescriptor{m.Input(), m.Output()} {
		fields := message.Fields()
		for i := 0; i < fields.Len(); i++ {
			f := fields.Get(i)
			fmt.Printf("field %s %d %s\n", f.FullName(), f.Number(), f.Kind())
		}
	}
}
