package main

import (
	"context"
	"testing"
	"time"
)

// The README's first command: the walkthrough must finish, with no
// service installed.
func TestQuickstart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := run(ctx, "", "", false); err != nil {
		t.Fatal(err)
	}
}
