// Downloads one storage volume many times, several at once over one go-libvirt connection (as
// the libvirt provider's read-backs of a `pulumi refresh` do), and prints how many came back
// with a size other than the volume's. scripts/bench-volume-downloads builds it against
// go-libvirt with and without the engine's patches.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"sync"
	"time"

	libvirt "github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"
)

func main() {
	socket := flag.String("socket", "", "the libvirtd socket")
	pool := flag.String("pool", "", "the volume's pool")
	volume := flag.String("volume", "", "the volume")
	size := flag.Int("size", 0, "the volume's size in bytes")
	rounds := flag.Int("rounds", 500, "rounds")
	parallel := flag.Int("parallel", 6, "downloads at once in a round")
	flag.Parse()

	l := libvirt.NewWithDialer(dialers.NewLocal(dialers.WithSocket(*socket), dialers.WithLocalTimeout(5*time.Second)))
	if err := l.ConnectToURI(libvirt.QEMUSystem); err != nil {
		fmt.Fprintln(os.Stderr, "connect:", err)
		os.Exit(2)
	}
	defer l.Disconnect()
	p, err := l.StoragePoolLookupByName(*pool)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pool:", err)
		os.Exit(2)
	}
	v, err := l.StorageVolLookupByName(p, *volume)
	if err != nil {
		fmt.Fprintln(os.Stderr, "volume:", err)
		os.Exit(2)
	}

	var mu sync.Mutex
	short, failed := 0, 0
	started := time.Now()
	for round := 0; round < *rounds; round++ {
		var wg sync.WaitGroup
		for i := 0; i < *parallel; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var got bytes.Buffer
				err := l.StorageVolDownload(v, &got, 0, 0, 0)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					failed++
				} else if got.Len() != *size {
					short++
				}
			}()
		}
		wg.Wait()
	}
	fmt.Printf("downloads %d, wrong size %d, errors %d, %.1f s\n", *rounds**parallel, short, failed, time.Since(started).Seconds())
}
