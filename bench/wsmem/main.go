// Command wsmem measures the server-side memory cost of idle WebSocket
// connections for several Go WebSocket libraries.
//
// It has three roles:
//
//	wsmem server -lib NAME -addr 127.0.0.1:0   serve /ws with one library and /stats
//	wsmem client -url ws://127.0.0.1:PORT/ws -conns N   open and hold N connections
//	wsmem run -conns 10000                      drive server+client per library, print a table
//
// All traffic stays on loopback (127.0.0.0/8).
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "server":
		err = serverMain(os.Args[2:])
	case "client":
		err = clientMain(os.Args[2:])
	case "run":
		err = runMain(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "wsmem:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: wsmem server|client|run [flags]  (-h for flags)")
	os.Exit(2)
}
