module libchat/examples/go

go 1.19
