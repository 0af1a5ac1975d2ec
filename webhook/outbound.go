package webhook

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"syscall"
)

// Outbound policy: a webhook goes only to public addresses. AllowPrivate (for local development
// and tests) also lets loopback and private ranges through; link-local addresses, where cloud
// metadata services live, are refused even then.

// ErrRefusedAddress means a webhook destination is, or resolves to, an address the policy refuses.
var ErrRefusedAddress = errors.New("refused outbound address")

// awsMetadataV6 is the IPv6 address of a cloud metadata service, inside the private fc00::/7.
var awsMetadataV6 = netip.MustParseAddr("fd00:ec2::254")

// CheckAddr tells whether a webhook may be sent to ip.
func CheckAddr(ip netip.Addr, allowPrivate bool) error {
	ip = ip.Unmap()
	switch {
	case !ip.IsValid():
		return fmt.Errorf("%w: invalid address", ErrRefusedAddress)
	case ip.IsUnspecified(), ip.IsMulticast(), ip.IsInterfaceLocalMulticast(), ip.IsLinkLocalMulticast():
		return fmt.Errorf("%w: %s is unspecified or multicast", ErrRefusedAddress, ip)
	case ip.IsLinkLocalUnicast(), ip == awsMetadataV6:
		return fmt.Errorf("%w: %s is link-local", ErrRefusedAddress, ip)
	case (ip.IsLoopback() || ip.IsPrivate()) && !allowPrivate:
		return fmt.Errorf("%w: %s is loopback or private (CREDPORT_OUTBOUND_ALLOW_PRIVATE=true allows it)", ErrRefusedAddress, ip)
	}
	return nil
}

// dialControl refuses, at connect time, an address the policy refuses: the address actually
// dialed, whatever DNS answered when the URL was set.
func dialControl(allowPrivate bool) func(network, address string, _ syscall.RawConn) error {
	return func(_, address string, _ syscall.RawConn) error {
		host, _, err := net.SplitHostPort(address)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrRefusedAddress, err)
		}
		ip, err := netip.ParseAddr(host)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrRefusedAddress, err)
		}
		return CheckAddr(ip, allowPrivate)
	}
}

// Resolver looks up a host's addresses; *net.Resolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// ValidateURL checks a webhook URL when it is set: absolute http(s), with a host whose every
// address the policy allows. "" (no URL) is valid. A host that does not resolve now is accepted:
// the address dialed at delivery is checked again.
func ValidateURL(ctx context.Context, raw string, allowPrivate bool, r Resolver) error {
	if raw == "" {
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("not a valid URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return errors.New("must be an http or https URL")
	}
	host := u.Hostname()
	if host == "" {
		return errors.New("must name a host")
	}
	if u.User != nil {
		return errors.New("must not carry a user name or password")
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return CheckAddr(ip, allowPrivate)
	}
	if r == nil {
		r = net.DefaultResolver
	}
	addrs, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil //nolint:nilerr // checked again on the address dialed
	}
	for _, ip := range addrs {
		if err := CheckAddr(ip, allowPrivate); err != nil {
			return fmt.Errorf("host %s resolves to a refused address: %w", host, err)
		}
	}
	return nil
}
