//go:build cgo

package demo

import (
	"errors"
	"fmt"

	"github.com/msteinert/pam/v2"
)

// pamAvailable: this build can drive PAM in-process (libpam through cgo).
const pamAvailable = true

// pamTx is one libpam transaction (pam_start to pam_end) through github.com/msteinert/pam.
type pamTx struct {
	tx *pam.Transaction
}

// pamStart starts a transaction of user on service. The conversation answers every prompt
// (echo off or on) with conv.password and shows the module's messages through conv.
func pamStart(service, user string, conv pamConv) (*pamTx, error) {
	tx, err := pam.StartFunc(service, user, func(s pam.Style, msg string) (string, error) {
		switch s {
		case pam.PromptEchoOff, pam.PromptEchoOn:
			if conv.onPrompt != nil {
				conv.onPrompt(msg)
			}
			return conv.password, nil
		case pam.TextInfo, pam.ErrorMsg:
			if conv.onInfo != nil {
				conv.onInfo(msg)
			}
			return "", nil
		}
		return "", fmt.Errorf("unexpected conversation style %d", s)
	})
	if err != nil {
		return nil, fmt.Errorf("pam_start(%s, %s): %w", service, user, err)
	}
	return &pamTx{tx: tx}, nil
}

// do runs one operation: "authenticate", "acct_mgmt", "open_session" or "close_session".
func (p *pamTx) do(op string) error {
	var err error
	switch op {
	case "authenticate":
		err = p.tx.Authenticate(0)
	case "acct_mgmt":
		err = p.tx.AcctMgmt(0)
	case "open_session":
		err = p.tx.OpenSession(0)
	case "close_session":
		err = p.tx.CloseSession(0)
	default:
		return fmt.Errorf("unknown PAM operation %q", op)
	}
	if err != nil {
		var pe pam.Error
		if errors.As(err, &pe) {
			return fmt.Errorf("pam_%s: %s (PAM code %d)", op, pe.Error(), int(pe))
		}
		return fmt.Errorf("pam_%s: %w", op, err)
	}
	return nil
}

// end is pam_end.
func (p *pamTx) end() error { return p.tx.End() }
