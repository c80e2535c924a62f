// Package load drives the saga from outside, as a user would: it places
// orders through the order service's API at a fixed rate (open loop) or with
// a fixed number of sagas in flight (closed loop), follows every saga to its
// terminal event (order.confirmed or order.cancelled, seen on a core NATS
// subscription), and reports the completed sagas per second, the
// accepted→terminal latency (an HDR histogram), the read model's lag, the
// errors, the sagas not terminal at the end, and the CPU the stack's
// processes spent per saga. It backs jetsaga load and jetsaga bench.
package load
