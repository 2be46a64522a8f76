// Command go-sdk-v2-client runs the client matrix through s3mesh with the AWS SDK for Go v2 as
// Debian packages it (service/s3 1.29.1, feature/s3/manager), configured as its users configure
// it for an S3-compatible store: a static endpoint, path style, dummy keys (s3mesh re-signs).
// Every object is read back and compared. Prints a JSON report (checks passed, and per
// operation the x-amz-content-sha256 and checksum headers each request left with); exits 1 at
// the first failure.
//
// Built by the Makefile with Debian's Go and Debian's SDK sources (GOPATH mode).
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/s3/manager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

var hexHash = regexp.MustCompile(`^[0-9a-f]{64}$`)

// modes records, per operation, how each request's payload was signed as it left the SDK.
type modes struct {
	sync.Mutex
	seen map[string]map[string]bool
}

func (m *modes) record(stack *middleware.Stack) error {
	return stack.Finalize.Add(middleware.FinalizeMiddlewareFunc("s3meshRecordModes",
		func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
			if req, ok := in.Request.(*smithyhttp.Request); ok {
				mode := req.Header.Get("X-Amz-Content-Sha256")
				if hexHash.MatchString(mode) {
					mode = "hex payload hash"
				}
				var extra []string
				for name := range req.Header {
					if lower := strings.ToLower(name); strings.HasPrefix(lower, "x-amz-checksum-") || lower == "content-md5" {
						extra = append(extra, lower)
					}
				}
				sort.Strings(extra)
				if len(extra) > 0 {
					mode += " + " + strings.Join(extra, ", ")
				}
				m.Lock()
				op := awsmiddleware.GetOperationName(ctx)
				if m.seen[op] == nil {
					m.seen[op] = map[string]bool{}
				}
				m.seen[op][mode] = true
				m.Unlock()
			}
			return next.HandleFinalize(ctx, in)
		}), middleware.After)
}

func random(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

type run struct {
	ctx    context.Context
	client *s3.Client
	bucket string
	passed []string
}

func (r *run) get(key string, rng *string) ([]byte, error) {
	out, err := r.client.GetObject(r.ctx, &s3.GetObjectInput{Bucket: &r.bucket, Key: &key, Range: rng})
	if err != nil {
		return nil, fmt.Errorf("GetObject %s: %w", key, err)
	}
	defer out.Body.Close()
	return io.ReadAll(out.Body)
}

func (r *run) roundTrip(key string, data []byte) error {
	if _, err := r.client.PutObject(r.ctx, &s3.PutObjectInput{Bucket: &r.bucket, Key: &key, Body: bytes.NewReader(data)}); err != nil {
		return fmt.Errorf("PutObject %s: %w", key, err)
	}
	got, err := r.get(key, nil)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, data) {
		return fmt.Errorf("%s: %d bytes read back differ from the %d sent", key, len(got), len(data))
	}
	return nil
}

func (r *run) all(p string, keys []string) error {
	small := random(1000)
	if err := r.roundTrip(p+"empty", nil); err != nil {
		return err
	}
	r.passed = append(r.passed, "empty object")
	if err := r.roundTrip(p+"small", small); err != nil {
		return err
	}
	r.passed = append(r.passed, "small object")

	large := random(11*1024*1024 + 7)
	uploader := manager.NewUploader(r.client, func(u *manager.Uploader) { u.PartSize = 5 * 1024 * 1024 })
	if _, err := uploader.Upload(r.ctx, &s3.PutObjectInput{Bucket: &r.bucket, Key: aws.String(p + "large"), Body: bytes.NewReader(large)}); err != nil {
		return fmt.Errorf("multipart upload: %w", err)
	}
	if got, err := r.get(p+"large", nil); err != nil || !bytes.Equal(got, large) {
		return fmt.Errorf("multipart object read back: %v", err)
	}
	r.passed = append(r.passed, "multipart upload")

	if got, err := r.get(p+"small", aws.String("bytes=100-199")); err != nil || !bytes.Equal(got, small[100:200]) {
		return fmt.Errorf("range GET: %v", err)
	}
	r.passed = append(r.passed, "range GET")
	head, err := r.client.HeadObject(r.ctx, &s3.HeadObjectInput{Bucket: &r.bucket, Key: aws.String(p + "small")})
	if err != nil || head.ContentLength != int64(len(small)) {
		return fmt.Errorf("HEAD: %v", err)
	}
	r.passed = append(r.passed, "HEAD")

	if _, err := r.client.CopyObject(r.ctx, &s3.CopyObjectInput{Bucket: &r.bucket, Key: aws.String(p + "copy"), CopySource: aws.String(r.bucket + "/" + p + "small")}); err != nil {
		return fmt.Errorf("CopyObject: %w", err)
	}
	if got, err := r.get(p+"copy", nil); err != nil || !bytes.Equal(got, small) {
		return fmt.Errorf("copy read back: %v", err)
	}
	r.passed = append(r.passed, "copy")

	for _, key := range keys {
		if err := r.roundTrip(p+"keys/"+key, []byte(key)); err != nil {
			return err
		}
	}
	r.passed = append(r.passed, "awkward keys")

	for n := 1; n <= 3; n++ {
		for _, key := range []string{fmt.Sprintf("%sdir/f%d", p, n), fmt.Sprintf("%sdir/d%d/x", p, n)} {
			if err := r.roundTrip(key, []byte("x")); err != nil {
				return err
			}
		}
	}
	var files, dirs, pages int
	paginator := s3.NewListObjectsV2Paginator(r.client, &s3.ListObjectsV2Input{Bucket: &r.bucket, Prefix: aws.String(p + "dir/"), Delimiter: aws.String("/"), MaxKeys: 2})
	for paginator.HasMorePages() {
		page, err := paginator.NextPage(r.ctx)
		if err != nil {
			return fmt.Errorf("ListObjectsV2: %w", err)
		}
		files, dirs, pages = files+len(page.Contents), dirs+len(page.CommonPrefixes), pages+1
	}
	if files != 3 || dirs != 3 || pages < 3 {
		return fmt.Errorf("listing: %d keys, %d prefixes, %d pages", files, dirs, pages)
	}
	r.passed = append(r.passed, "list with prefix, delimiter and pages")

	upload, err := r.client.CreateMultipartUpload(r.ctx, &s3.CreateMultipartUploadInput{Bucket: &r.bucket, Key: aws.String(p + "aborted")})
	if err != nil {
		return fmt.Errorf("CreateMultipartUpload: %w", err)
	}
	if _, err := r.client.AbortMultipartUpload(r.ctx, &s3.AbortMultipartUploadInput{Bucket: &r.bucket, Key: aws.String(p + "aborted"), UploadId: upload.UploadId}); err != nil {
		return fmt.Errorf("AbortMultipartUpload: %w", err)
	}
	r.passed = append(r.passed, "multipart abort")

	// Presigned URLs, sent by Go's own HTTP client as curl would send them.
	presign := s3.NewPresignClient(r.client)
	put, err := presign.PresignPutObject(r.ctx, &s3.PutObjectInput{Bucket: &r.bucket, Key: aws.String(p + "presigned")})
	if err != nil {
		return fmt.Errorf("PresignPutObject: %w", err)
	}
	req, _ := http.NewRequest(http.MethodPut, put.URL, bytes.NewReader(small))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		return fmt.Errorf("presigned PUT: %v %v", err, resp)
	}
	getURL, err := presign.PresignGetObject(r.ctx, &s3.GetObjectInput{Bucket: &r.bucket, Key: aws.String(p + "presigned")})
	if err != nil {
		return fmt.Errorf("PresignGetObject: %w", err)
	}
	resp, err := http.Get(getURL.URL)
	if err != nil {
		return fmt.Errorf("presigned GET: %w", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(body, small) {
		return fmt.Errorf("presigned GET answered %d", resp.StatusCode)
	}
	r.passed = append(r.passed, "presigned PUT and GET")

	if _, err := r.client.DeleteObject(r.ctx, &s3.DeleteObjectInput{Bucket: &r.bucket, Key: aws.String(p + "copy")}); err != nil {
		return fmt.Errorf("DeleteObject: %w", err)
	}
	var batch []types.ObjectIdentifier
	for _, k := range []string{"small", "empty", "large", "presigned"} {
		batch = append(batch, types.ObjectIdentifier{Key: aws.String(p + k)})
	}
	deleted, err := r.client.DeleteObjects(r.ctx, &s3.DeleteObjectsInput{Bucket: &r.bucket, Delete: &types.Delete{Objects: batch}})
	if err != nil || len(deleted.Deleted) != len(batch) || len(deleted.Errors) != 0 {
		return fmt.Errorf("DeleteObjects: %v", err)
	}
	r.passed = append(r.passed, "delete and batch delete")
	return nil
}

func main() {
	endpoint := flag.String("endpoint", "", "URL of the s3mesh listener")
	bucket := flag.String("bucket", "demo", "bucket")
	prefix := flag.String("prefix", "go-sdk-v2/", "key prefix")
	keys := flag.String("keys", "with space.txt,plus+sign,pct%literal,a//double,unicode-é-日本", "awkward keys, comma-separated")
	flag.Parse()
	recorded := &modes{seen: map[string]map[string]bool{}}
	client := s3.New(s3.Options{
		Region:           "us-east-1",
		Credentials:      credentials.NewStaticCredentialsProvider("AKIDDUMMYKEY", "dummy-secret-s3mesh-replaces", ""),
		EndpointResolver: s3.EndpointResolverFromURL(*endpoint),
		UsePathStyle:     true,
		RetryMaxAttempts: 1,
		APIOptions:       []func(*middleware.Stack) error{recorded.record},
	})
	r := &run{ctx: context.Background(), client: client, bucket: *bucket}
	err := r.all(*prefix, strings.Split(*keys, ","))
	payload := map[string][]string{}
	for op, set := range recorded.seen {
		for mode := range set {
			payload[op] = append(payload[op], mode)
		}
		sort.Strings(payload[op])
	}
	report, _ := json.Marshal(map[string]interface{}{"passed": r.passed, "payload_modes": payload})
	fmt.Println(string(report))
	if err != nil {
		var api interface{ ErrorCode() string }
		if errors.As(err, &api) {
			fmt.Fprintln(os.Stderr, "go-sdk-v2-client: store or s3mesh answered", api.ErrorCode())
		}
		fmt.Fprintln(os.Stderr, "go-sdk-v2-client:", err)
		os.Exit(1)
	}
}
