package dashboard_test

import (
	"context"
	"errors"
	"log"
	"net/http"

	"github.com/gocap/gocap/dashboard"
	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage/sqlite"
	"github.com/gocap/gocap/transport/memory"
)

// Mount the dashboard under /gocap/ with an authorizer: without one it
// serves loopback clients only.
func ExampleNew() {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, "app.db")
	if err != nil {
		log.Fatal(err)
	}
	ob, err := outbox.New(sqlite.New(db, sqlite.Options{}), memory.New(memory.Options{}), outbox.Options{})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/gocap/", dashboard.New(ob, dashboard.Options{
		Prefix: "/gocap",
		Authorize: func(r *http.Request) (string, error) {
			if user, pass, ok := r.BasicAuth(); ok && user == "ops" && pass == "s3cret" {
				return user, nil // recorded in the log of every requeue and delete
			}
			return "", errors.New("ops credentials required")
		},
	}))
	go ob.Run(ctx)
	log.Fatal(http.ListenAndServe("127.0.0.1:8080", mux))
}
