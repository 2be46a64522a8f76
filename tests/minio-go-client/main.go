// Command minio-go-client uploads objects through s3mesh with minio-go, which signs every
// chunk of a PUT body over plain HTTP (STREAMING-AWS4-HMAC-SHA256-PAYLOAD), and, with trailing
// headers on, signs multipart parts with a CRC32C trailer (…-PAYLOAD-TRAILER). Each object is
// read back and compared. The credentials are placeholders: s3mesh signs with the caller's own
// profile and re-signs the chunks. Prints a JSON report; exits 1 at the first mismatch.
//
// Built by the Makefile with Debian's Go and Debian's minio-go sources (GOPATH mode).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

func pattern(size int64, seed byte) []byte {
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(uint32(i)*2654435761>>8) ^ seed
	}
	return data
}

func roundTrip(ctx context.Context, client *minio.Client, bucket, key string, data []byte, opts minio.PutObjectOptions) error {
	if _, err := client.PutObject(ctx, bucket, key, bytes.NewReader(data), int64(len(data)), opts); err != nil {
		return fmt.Errorf("PutObject %s (%d bytes): %w", key, len(data), err)
	}
	object, err := client.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return fmt.Errorf("GetObject %s: %w", key, err)
	}
	defer object.Close()
	got, err := io.ReadAll(object)
	if err != nil {
		return fmt.Errorf("reading %s: %w", key, err)
	}
	if !bytes.Equal(got, data) {
		return fmt.Errorf("%s: read back %d bytes that differ from the %d sent", key, len(got), len(data))
	}
	return nil
}

func newClient(endpoint string, trailers bool) (*minio.Client, error) {
	return minio.New(endpoint, &minio.Options{
		Creds:           credentials.NewStaticV4("AKIDPLACEHOLDER00000", "placeholder-not-a-secret", ""),
		Secure:          false,
		Region:          "us-east-1",
		BucketLookup:    minio.BucketLookupPath,
		TrailingHeaders: trailers,
	})
}

func run(endpoint, bucket, prefix string) ([]string, error) {
	ctx := context.Background()
	plain, err := newClient(endpoint, false)
	if err != nil {
		return nil, err
	}
	var passed []string
	opts := minio.PutObjectOptions{ContentType: "application/octet-stream", DisableMultipart: true}
	for i, size := range []int64{0, 1, 64 * 1024, 1024*1024 + 3} {
		name := fmt.Sprintf("chunk-signed PUT %d bytes", size)
		if err := roundTrip(ctx, plain, bucket, fmt.Sprintf("%sput-%d", prefix, size), pattern(size, byte(i)), opts); err != nil {
			return passed, err
		}
		passed = append(passed, name)
	}
	trailing, err := newClient(endpoint, true)
	if err != nil {
		return passed, err
	}
	multipart := minio.PutObjectOptions{ContentType: "application/octet-stream", PartSize: 5 * 1024 * 1024, NumThreads: 1}
	if err := roundTrip(ctx, trailing, bucket, prefix+"multipart", pattern(11*1024*1024+5, 9), multipart); err != nil {
		return passed, err
	}
	passed = append(passed, "multipart with signed CRC32C trailers")
	return passed, nil
}

func main() {
	endpoint := flag.String("endpoint", "", "host:port of the s3mesh listener")
	bucket := flag.String("bucket", "demo", "bucket")
	prefix := flag.String("prefix", "minio-go/", "key prefix")
	flag.Parse()
	passed, err := run(*endpoint, *bucket, *prefix)
	report, _ := json.Marshal(map[string]interface{}{"passed": passed})
	fmt.Println(string(report))
	if err != nil {
		fmt.Fprintln(os.Stderr, "minio-go-client:", err)
		os.Exit(1)
	}
}
