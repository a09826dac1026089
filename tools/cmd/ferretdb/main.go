// Command ferretdb runs FerretDB (a MongoDB wire-protocol server) on the
// SQLite backend for local development and integration tests.
//
// It wraps FerretDB's embeddable package instead of building FerretDB's own
// cmd/ferretdb: that command refuses to start unless it was built from a
// FerretDB source checkout with a generated build/version/version.txt, which a
// module-cache build can never have. The embeddable package also starts no
// telemetry reporter and no debug/metrics HTTP listener, so the only socket
// this process opens is the MongoDB listener on the address we pass.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen-addr", "127.0.0.1:57017", "MongoDB wire-protocol TCP address (loopback by default)")
	dataDir := flag.String("sqlite-dir", "", "directory holding the SQLite database files (required)")
	debug := flag.Bool("debug", false, "log at debug level")
	flag.Parse()

	if *dataDir == "" {
		fmt.Fprintln(os.Stderr, "ferretdb: -sqlite-dir is required")
		os.Exit(2)
	}
	abs, err := filepath.Abs(*dataDir)
	if err == nil {
		err = os.MkdirAll(abs, 0o700)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb: data directory %q: %v\n", *dataDir, err)
		os.Exit(1)
	}

	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	f, err := ferretdb.New(&ferretdb.Config{
		Listener: ferretdb.ListenerConfig{TCP: *listen},
		Logger:   logger,
		Handler:  "sqlite",
		// FerretDB wants a file: URI naming a directory, with a trailing slash.
		SQLiteURL: "file:" + abs + "/",
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb: %v\n", err)
		os.Exit(1)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	logger.Info("ferretdb: serving", "addr", *listen, "sqlite", abs, "pid", os.Getpid())
	if err := f.Run(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb: %v\n", err)
		os.Exit(1)
	}
	logger.Info("ferretdb: stopped")
}
