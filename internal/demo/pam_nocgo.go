//go:build !cgo

package demo

// pamAvailable: this build cannot drive PAM (no cgo, so no libpam); Run refuses at once.
const pamAvailable = false

type pamTx struct{}

func pamStart(service, user string, conv pamConv) (*pamTx, error) { return nil, errNoPAMBuild }
func (p *pamTx) do(op string) error                               { return errNoPAMBuild }
func (p *pamTx) end() error                                       { return nil }
