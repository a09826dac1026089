// Command pubsub-fake serves Google's own in-memory Pub/Sub fake (pstest) on a
// TCP address so that the real Python client can talk to it through
// PUBSUB_EMULATOR_HOST. Using Google's fake, rather than a hand-written one,
// keeps the wire protocol and its edge cases (ack deadlines, ordering,
// not-found errors) identical to what the production client library expects.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"cloud.google.com/go/pubsub/v2/pstest"
)

func main() {
	host := flag.String("host", "127.0.0.1", "address to bind; loopback by default so the fake is never reachable from outside")
	port := flag.Int("port", 58085, "TCP port to listen on")
	flag.Parse()

	addr := net.JoinHostPort(*host, strconv.Itoa(*port))

	// Probe the address first: pstest panics when it cannot listen, and a
	// one-line error is far easier to act on than a goroutine dump in a log.
	probe, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "pubsub-fake: cannot listen on %s: %v\n", addr, err)
		os.Exit(1)
	}
	_ = probe.Close()

	srv := pstest.NewServerWithAddress(addr)
	log.Printf("pubsub-fake: serving the Pub/Sub API on %s (pid %d)", srv.Addr, os.Getpid())

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	sig := <-sigs
	log.Printf("pubsub-fake: received %s, shutting down", sig)
	if err := srv.Close(); err != nil {
		log.Printf("pubsub-fake: close: %v", err)
		os.Exit(1)
	}
}
