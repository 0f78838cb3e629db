package odin_test

import (
	"context"
	"fmt"
	"log"

	"github.com/odinreset/odinreset/odin"
	"github.com/odinreset/odinreset/odin/odintest"
)

// This example resets the web password of every user of a group, against the simulator.
func Example() {
	sim, err := odintest.NewServer(odintest.Config{Users: 3, Username: "admin", Password: "example-password"})
	if err != nil {
		log.Fatal(err)
	}
	defer sim.Close()

	ctx := context.Background()
	client, err := odin.NewClient(sim.URL, "admin", "example-password")
	if err != nil {
		log.Fatal(err)
	}

	users, err := client.GroupUsers(ctx, "sp1", "grp1")
	if err != nil {
		log.Fatal(err)
	}
	passwords, err := client.GeneratePasswords(ctx, "sp1", "grp1", len(users))
	if err != nil {
		log.Fatal(err)
	}
	for i, user := range users {
		err := client.SetWebPassword(ctx, user.UserID, passwords[i])
		switch {
		case err == nil:
			fmt.Println(user.UserID, "applied")
		case odin.IsTransient(err):
			fmt.Println(user.UserID, "retry later:", err)
		default:
			fmt.Println(user.UserID, "failed:", err)
		}
	}
	// Output:
	// user0001@example.com applied
	// user0002@example.com applied
	// user0003@example.com applied
}
