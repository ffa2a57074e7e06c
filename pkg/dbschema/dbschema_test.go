package dbschema_test

import (
	"context"
	"testing"

	"github.com/taskchat/taskchat/pkg/dbschema"
	"github.com/taskchat/taskchat/pkg/dbtest"
)

func TestApplyTwice(t *testing.T) {
	ctx := context.Background()
	d, err := dbtest.Create(ctx, "schema")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Drop)
	p, err := dbschema.Apply(ctx, d.URL, dbschema.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range p.Statements {
		t.Log(s.SQL)
	}
	p2, err := dbschema.Apply(ctx, d.URL, dbschema.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range p2.Statements {
		t.Error("second plan:", s.SQL)
	}
}
