package containerdshim

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	eventsapi "github.com/containerd/containerd/api/services/ttrpc/events/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/ttrpc"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// publisher forwards task events to containerd's ttrpc events service
// ($TTRPC_ADDRESS) from a queue of its own: the task service never waits
// for containerd, which may be slow, restarting or gone. An event that
// cannot be delivered after a few tries is logged and dropped; one that
// finds the queue full likewise. containerd learns a task's end from Wait
// as well, so a lost event delays nothing that matters.
type publisher struct {
	address, namespace string
	log                io.Writer
	queue              chan *types.Envelope
	done               chan struct{}
}

// publishQueue bounds the events waiting for containerd.
const publishQueue = 256

func newPublisher(ctx context.Context, address, namespace string, log io.Writer) *publisher {
	p := &publisher{address: address, namespace: namespace, log: log,
		queue: make(chan *types.Envelope, publishQueue), done: make(chan struct{})}
	go p.loop(ctx)
	return p
}

// publish queues an event for topic ("/tasks/exit"); it never blocks.
func (p *publisher) publish(topic string, event any) {
	a, err := typeurl.MarshalAnyToProto(event)
	if err != nil {
		fmt.Fprintf(p.log, "containerd-shim-arrow: event %s: %v\n", topic, err)
		return
	}
	env := &types.Envelope{Timestamp: timestamppb.Now(), Namespace: p.namespace, Topic: topic, Event: a}
	select {
	case p.queue <- env:
	default:
		fmt.Fprintf(p.log, "containerd-shim-arrow: event %s dropped: the queue is full\n", topic)
	}
}

// drain waits until the queued events went out (or were dropped), for
// at most d: a shim about to exit says its last TaskExit first.
func (p *publisher) drain(d time.Duration) {
	deadline := time.After(d)
	for len(p.queue) > 0 {
		select {
		case <-deadline:
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (p *publisher) loop(ctx context.Context) {
	defer close(p.done)
	var client *ttrpc.Client
	defer func() {
		if client != nil {
			client.Close()
		}
	}()
	for {
		var env *types.Envelope
		select {
		case <-ctx.Done():
			return
		case env = <-p.queue:
		}
		var err error
		for try := 0; try < 5; try++ {
			if try > 0 {
				time.Sleep(time.Duration(try) * 200 * time.Millisecond)
			}
			if client == nil {
				client, err = p.dial()
				if err != nil {
					continue
				}
			}
			fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err = eventsapi.NewTTRPCEventsClient(client).Forward(fctx, &eventsapi.ForwardRequest{Envelope: env})
			cancel()
			if err == nil {
				break
			}
			client.Close()
			client = nil
		}
		if err != nil {
			fmt.Fprintf(p.log, "containerd-shim-arrow: event %s not delivered: %v\n", env.Topic, err)
		}
	}
}

func (p *publisher) dial() (*ttrpc.Client, error) {
	if p.address == "" {
		return nil, fmt.Errorf("no TTRPC_ADDRESS in the shim's environment")
	}
	addr := strings.TrimPrefix(p.address, "unix://")
	conn, err := net.DialTimeout("unix", addr, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("dial containerd's events service: %w", err)
	}
	return ttrpc.NewClient(conn), nil
}
