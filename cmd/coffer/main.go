// Command coffer is the Coffer server and its command-line client.
package main

import (
	"os"

	"github.com/cofferhq/coffer/internal/cli"
)

func main() { os.Exit(cli.Execute()) }
