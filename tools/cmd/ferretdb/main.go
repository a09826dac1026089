// Command ferretdb runs FerretDB (a MongoDB wire-protocol server) for local
// development and integration tests, on its PostgreSQL backend
// (-postgresql-url) or its SQLite backend (-sqlite-dir).
//
// Why PostgreSQL is what the devstack uses: FerretDB v1.24's SQLite backend
// writes with `UPDATE ... WHERE _ferretdb_sjson->'$._id' = ?`, an expression
// its own _id index (built on `_ferretdb_sjson->"_id"`) does not match, so
// every update, and every query filtering on more than _id alone, scans and
// decodes the whole collection: a compare-and-set on one execution record
// took 5 ms with 300 records and 70 ms with 3,000. The PostgreSQL backend
// writes through the _id index and lets concurrent writers work in parallel
// instead of queueing on SQLite's one writer lock. Its lookups (`_jsonb->$1
// @> $2`) cannot use its own btree indexes either; the devstack gives each
// of them a GIN twin in the storage cluster (FerretStorage.after_ready in
// shared/spreadpilot/devstack/services.py), which makes them index scans.
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
	pgURL := flag.String("postgresql-url", "", "PostgreSQL URL of the backend database (this or -sqlite-dir)")
	dataDir := flag.String("sqlite-dir", "", "directory holding the SQLite database files (this or -postgresql-url)")
	debug := flag.Bool("debug", false, "log at debug level")
	flag.Parse()

	if (*pgURL == "") == (*dataDir == "") {
		fmt.Fprintln(os.Stderr, "ferretdb: give exactly one of -postgresql-url and -sqlite-dir")
		os.Exit(2)
	}

	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	config := ferretdb.Config{
		Listener: ferretdb.ListenerConfig{TCP: *listen},
		Logger:   logger,
	}
	backend := "postgresql"
	if *pgURL != "" {
		config.Handler = "postgresql"
		config.PostgreSQLURL = *pgURL
	} else {
		abs, err := filepath.Abs(*dataDir)
		if err == nil {
			err = os.MkdirAll(abs, 0o700)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "ferretdb: data directory %q: %v\n", *dataDir, err)
			os.Exit(1)
		}
		backend = "sqlite " + abs
		config.Handler = "sqlite"
		// FerretDB wants a file: URI naming a directory, with a trailing slash.
		config.SQLiteURL = "file:" + abs + "/"
	}

	f, err := ferretdb.New(&config)
	if err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb: %v\n", err)
		os.Exit(1)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	// The URL carries a password: only the backend kind is logged.
	logger.Info("ferretdb: serving", "addr", *listen, "backend", backend, "pid", os.Getpid())
	if err := f.Run(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb: %v\n", err)
		os.Exit(1)
	}
	logger.Info("ferretdb: stopped")
}
