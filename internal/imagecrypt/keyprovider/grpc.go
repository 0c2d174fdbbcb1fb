package keyprovider

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"

	pb "github.com/containers/ocicrypt/utils/keyprovider"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// service is the gRPC KeyProviderService.
type service struct {
	pb.UnimplementedKeyProviderServiceServer
	p   *Provider
	log *slog.Logger
}

func (s *service) call(ctx context.Context, op string, in *pb.KeyProviderKeyWrapProtocolInput) (*pb.KeyProviderKeyWrapProtocolOutput, error) {
	out, err := s.p.Handle(ctx, in.GetKeyProviderKeyWrapProtocolInput())
	if err != nil {
		// The error names the key and the vault's words, never the request's content.
		s.log.Info("key provider request refused", "op", op, "err", err)
		return nil, status.Error(codes.PermissionDenied, err.Error())
	}
	return &pb.KeyProviderKeyWrapProtocolOutput{KeyProviderKeyWrapProtocolOutput: out}, nil
}

func (s *service) WrapKey(ctx context.Context, in *pb.KeyProviderKeyWrapProtocolInput) (*pb.KeyProviderKeyWrapProtocolOutput, error) {
	return s.call(ctx, "keywrap", in)
}

func (s *service) UnWrapKey(ctx context.Context, in *pb.KeyProviderKeyWrapProtocolInput) (*pb.KeyProviderKeyWrapProtocolOutput, error) {
	return s.call(ctx, "keyunwrap", in)
}

// ListenUnix opens the unix socket at path (0600; a stale socket is replaced).
func ListenUnix(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		os.Remove(path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// Serve runs the gRPC KeyProviderService on ln until ctx ends.
func (p *Provider) Serve(ctx context.Context, ln net.Listener, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	srv := grpc.NewServer()
	pb.RegisterKeyProviderServiceServer(srv, &service{p: p, log: log})
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			srv.GracefulStop()
		case <-done:
		}
	}()
	err := srv.Serve(ln)
	close(done)
	if errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return err
}
