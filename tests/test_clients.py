"""Client families beyond boto3, the aws CLI, `aws-sdk-s3` and minio-go (whose tests are in
test_request_path.py, test_payload_modes.py and test_chunk_signed.py), each configured as its
users configure it and pointed at s3mesh with dummy keys, through both authorization modes and
both shells: every operation of the client matrix, bytes compared, and the payload modes the
client chose reported for the README's table.

- The AWS SDK for Go v2 from Debian's sources (`tests/go-sdk-v2-client`, built like the minio-go
  client).
- rclone and s3cmd, Debian's packages, each with the configuration its documentation shows for
  an S3-compatible store; the payload modes read from their own header dumps.
- The AWS SDK for JavaScript v3 (`@aws-sdk/client-s3`, `lib-storage`, `s3-request-presigner`,
  pinned in tests/js-sdk-client/package-lock.json), run with the machine's Node.js: its default
  flexible checksums (CRC32 on every upload: a header with a buffer, an aws-chunked trailer with
  a stream) and presigned URLs fetched by Node's own HTTP client.
"""

import json
import os
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

from conftest import s3_client
from test_payload_modes import FS_KEYS

ROOT = Path(__file__).resolve().parent.parent
JS_CLIENT = ROOT / "tests" / "js-sdk-client"
GO_SDK_V2_CLIENT = Path(os.environ.get("S3MESH_GO_SDK_V2_CLIENT_BIN", ROOT / ".tools" / "bin" / "go-sdk-v2-client"))
MATRIX = ["empty object", "small object", "stream upload", "multipart upload", "range GET", "HEAD", "copy",
          "awkward keys", "list with prefix, delimiter and pages", "multipart abort", "presigned PUT and GET",
          "delete and batch delete"]


def run_scenario(command: list, stack, prefix: str, keys: str | None) -> dict:
    """Runs a client's scenario program against `stack` and returns its JSON report."""
    done = subprocess.run([*command, "--endpoint", stack.url, "--bucket", "demo", "--prefix", prefix,
                           *(["--keys", keys] if keys else [])],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout)


def run_js_client(stack, prefix: str, keys: str | None) -> dict:
    node = shutil.which("node")
    assert node, "Node.js is needed for the JavaScript SDK client"
    return run_scenario([node, JS_CLIENT / "scenario.mjs"], stack, prefix, keys)


@pytest.mark.parametrize("store", ["moto", "s3s-fs"])
def test_aws_sdk_for_javascript_v3_runs_every_operation_with_its_default_checksums(store, stack, fs_stack):
    target = stack if store == "moto" else fs_stack
    report = run_js_client(target, f"js-sdk-{store}/", None if store == "moto" else FS_KEYS)
    assert report["passed"] == MATRIX, report
    modes = report["payload_modes"]
    # Its defaults over plain HTTP: a buffer is hashed (hex) and carries a CRC32 checksum header;
    # a stream goes aws-chunked with the CRC32 in a trailer. s3mesh keeps both for the store.
    assert sorted(modes["PutObject"]) == ["STREAMING-UNSIGNED-PAYLOAD-TRAILER + x-amz-trailer",
                                          "hex payload hash + x-amz-checksum-crc32"], modes
    assert modes["UploadPart"] == ["hex payload hash + x-amz-checksum-crc32"], modes


@pytest.mark.parametrize("store", ["moto", "s3s-fs"])
def test_aws_sdk_for_go_v2_runs_every_operation(store, stack, fs_stack):
    """Debian's AWS SDK for Go v2 (service/s3 1.29.1, 2022): older than the SDKs' default
    checksums, so it signs every body's hex SHA-256 and sends Content-MD5 on batch deletes."""
    target = stack if store == "moto" else fs_stack
    report = run_scenario([str(GO_SDK_V2_CLIENT)], target, f"go-sdk-v2-{store}/",
                          None if store == "moto" else FS_KEYS)
    assert report["passed"] == [c for c in MATRIX if c != "stream upload"], report
    modes = report["payload_modes"]
    assert modes["PutObject"] == ["hex payload hash"] and modes["UploadPart"] == ["hex payload hash"], modes


# -- rclone and s3cmd (Debian's packages) ------------------------------------------------------

def sent_payload_modes(log: str) -> list[str]:
    """The `x-amz-content-sha256` values a client's debug log shows it sent, hex hashes as one."""
    values = re.findall(r"x-amz-content-sha256['\"]?\s*[:=]\s*['\"]?([A-Za-z0-9-]+)", log, re.IGNORECASE)
    return sorted({"hex payload hash" if re.fullmatch(r"[0-9a-f]{64}", v) else v for v in values})


def upload_files(directory: Path) -> tuple[bytes, bytes]:
    """Files `empty`, `small` (1,000 bytes) and `large` (over a 5 MiB multipart threshold, not a
    whole number of parts) in `directory`; returns the small and large contents."""
    small, large = os.urandom(1000), os.urandom(11 * 1024 * 1024 + 7)
    for name, data in (("empty", b""), ("small", small), ("large", large)):
        (directory / name).write_bytes(data)
    return small, large


def awkward_files(directory: Path) -> dict[str, bytes]:
    """Files whose names S3 clients get wrong most often (`//` has no file form)."""
    files = {"with space.txt": b"space", "plus+sign": b"plus", "pct%25literal": b"pct", "unicode-é-日本": b"u"}
    directory.mkdir()
    for name, data in files.items():
        (directory / name).write_bytes(data)
    return files


class Rclone:
    """rclone configured as its S3 docs show for other providers, through environment variables:
    path style, dummy keys, `no_check_bucket` (as for any key that may not create buckets: s3mesh
    refuses `CreateBucket` without bucket-admin), multipart from 5 MiB (its default is 200 MiB)."""

    def __init__(self, stack, tmp_path: Path):
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RCLONE_"))}
        self.env.update(RCLONE_CONFIG=str(tmp_path / "rclone.conf"), RCLONE_CONFIG_MESH_TYPE="s3",
                        RCLONE_CONFIG_MESH_PROVIDER="Other", RCLONE_CONFIG_MESH_ENDPOINT=stack.url,
                        RCLONE_CONFIG_MESH_ACCESS_KEY_ID="AKIDDUMMYKEY", RCLONE_CONFIG_MESH_SECRET_ACCESS_KEY="dummy",
                        RCLONE_CONFIG_MESH_REGION="us-east-1", RCLONE_CONFIG_MESH_FORCE_PATH_STYLE="true",
                        RCLONE_CONFIG_MESH_NO_CHECK_BUCKET="true",  # its advice for keys that cannot create buckets
                        RCLONE_S3_UPLOAD_CUTOFF="5M", RCLONE_S3_CHUNK_SIZE="5M")
        self.log = ""

    def __call__(self, *args: str, stdin: bytes | None = None) -> bytes:
        done = subprocess.run(["rclone", "--dump", "headers", "--retries", "1", "--low-level-retries", "1", *args],
                              env=self.env, capture_output=True, input=stdin, timeout=300)
        self.log += done.stderr.decode(errors="replace")
        assert done.returncode == 0, f"rclone {' '.join(args)}:\n{done.stderr.decode(errors='replace')[-3000:]}"
        return done.stdout


def abandoned_upload(stack, key: str) -> str:
    """A multipart upload begun through s3mesh (boto3, keyless) with one part, never finished:
    what a client that crashed leaves behind. Its upload id."""
    s3 = s3_client(stack.url)
    upload = s3.create_multipart_upload(Bucket="demo", Key=key)["UploadId"]
    s3.upload_part(Bucket="demo", Key=key, UploadId=upload, PartNumber=1, Body=os.urandom(5 * 1024 * 1024))
    return upload


def open_uploads(stack, prefix: str) -> list[str]:
    """The ids of the multipart uploads open under `prefix` in `demo`."""
    listed = s3_client(stack.url).list_multipart_uploads(Bucket="demo", Prefix=prefix)
    return [u["UploadId"] for u in listed.get("Uploads", [])]


def test_rclone_copies_lists_and_links_through_s3mesh(stack, tmp_path):
    rclone, remote = Rclone(stack, tmp_path), "mesh:demo/rclone/"
    small, large = upload_files(tmp_path)
    rclone("copyto", str(tmp_path / "empty"), remote + "empty")
    rclone("copyto", str(tmp_path / "small"), remote + "small")
    # moto answers a completed multipart upload in an unversioned bucket with
    # `x-amz-version-id: null`, and then refuses rclone's check `HEAD ?versionId=null` (400): a
    # moto quirk (S3 sends no version there), so this upload skips rclone's check.
    rclone("copyto", "--s3-no-head", str(tmp_path / "large"), remote + "large")
    assert rclone("cat", remote + "empty") == b""
    assert rclone("cat", remote + "small") == small
    assert rclone("cat", remote + "large") == large
    assert rclone("cat", "--offset", "100", "--count", "100", remote + "small") == small[100:200]
    assert json.loads(rclone("lsjson", "--stat", remote + "small"))["Size"] == len(small)
    rclone("copyto", remote + "small", remote + "copy")  # server-side copy
    assert rclone("cat", remote + "copy") == small
    files = awkward_files(tmp_path / "keys")
    rclone("copy", str(tmp_path / "keys"), remote + "keys")
    for name, data in files.items():
        assert rclone("cat", remote + "keys/" + name) == data, name
    # A delimiter listing two keys a page: three files, three "directories". ListObjectsV2, as
    # rclone's docs advise for stores that have it: moto's V1 repeats every common prefix on
    # every page with its own opaque NextMarker (boto3 gets the same), a moto quirk: s3mesh never
    # touches response bodies.
    for n in (1, 2, 3):
        rclone("rcat", f"{remote}dir/f{n}", stdin=b"x")
        rclone("rcat", f"{remote}dir/d{n}/x", stdin=b"x")
    listed = rclone("lsf", "--s3-list-version", "2", "--s3-list-chunk", "2", remote + "dir/").decode().split()
    assert sorted(listed) == ["d1/", "d2/", "d3/", "f1", "f2", "f3"], listed
    url = rclone("link", remote + "small").decode().strip()
    with urllib.request.urlopen(url, timeout=30) as answer:
        assert answer.read() == small
    rclone("deletefile", remote + "copy")
    rclone("delete", remote + "dir/")
    assert rclone("lsf", "-R", remote + "dir/") == b""
    # Multipart abort, rclone's way: its cleanup command aborts every unfinished upload older
    # than max-age.
    upload = abandoned_upload(stack, "rclone/abandoned")
    assert upload in rclone("backend", "list-multipart-uploads", "mesh:demo/rclone/").decode()
    rclone("backend", "cleanup", "-o", "max-age=0s", "mesh:demo/rclone/")
    assert open_uploads(stack, "rclone/") == []
    # Bodies unsigned; requests without a body carry the empty body's hash.
    assert sent_payload_modes(rclone.log) == ["UNSIGNED-PAYLOAD", "hex payload hash"]


class S3cmd:
    """s3cmd with the config file its users write for an S3-compatible store: path style on the
    endpoint, no HTTPS, SigV4, dummy keys, multipart from 5 MiB (its default is 15)."""

    def __init__(self, stack, tmp_path: Path):
        host = stack.url.removeprefix("http://")
        self.config = tmp_path / "s3cfg"
        self.config.write_text("[default]\naccess_key = AKIDDUMMYKEY\nsecret_key = dummy\n"
                               f"host_base = {host}\nhost_bucket = {host}\nuse_https = False\n"
                               "signature_v2 = False\nbucket_location = us-east-1\nmultipart_chunk_size_mb = 5\n")
        self.log = ""

    def __call__(self, *args: str, fails: bool = False) -> bytes:
        done = subprocess.run(["s3cmd", "-c", str(self.config), "--debug", *args], capture_output=True, timeout=300)
        self.log += done.stderr.decode(errors="replace")
        log = done.stderr.decode(errors="replace")[-3000:]
        assert (done.returncode != 0) == fails, f"s3cmd {' '.join(args)}:\n{log}"
        return done.stdout + done.stderr if fails else done.stdout


def test_s3cmd_puts_gets_lists_copies_and_deletes_through_s3mesh(stack, tmp_path):
    s3cmd, remote = S3cmd(stack, tmp_path), "s3://demo/s3cmd/"
    small, large = upload_files(tmp_path)
    for name in ("empty", "small", "large"):
        s3cmd("put", str(tmp_path / name), remote + name)
    for name, data in (("empty", b""), ("small", small), ("large", large)):
        s3cmd("get", "--force", remote + name, str(tmp_path / f"{name}.back"))
        assert (tmp_path / f"{name}.back").read_bytes() == data, name
    # (`s3cmd info` would also read the bucket's policy and CORS: bucket-admin, not granted here.)
    assert b" 1000 " in s3cmd("ls", remote + "small")
    # `s3cmd cp` copies, then re-applies the source's ACL to the copy (`PUT ?acl`): that second
    # step needs `sharing`, which this caller lacks, so s3cmd reports a failure after the copy.
    refused = s3cmd("cp", remote + "small", remote + "copy", fails=True).decode(errors="replace")
    assert 'is not granted sharing on bucket "demo", key "s3cmd/copy"' in refused, refused[-2000:]
    s3cmd("get", "--force", remote + "copy", str(tmp_path / "copy.back"))
    assert (tmp_path / "copy.back").read_bytes() == small
    files = awkward_files(tmp_path / "keys")
    s3cmd("put", "--recursive", str(tmp_path / "keys") + "/", remote + "keys/")
    for name, data in files.items():
        s3cmd("get", "--force", remote + "keys/" + name, str(tmp_path / "one"))
        assert (tmp_path / "one").read_bytes() == data, name
    for n in (1, 2, 3):
        s3cmd("put", str(tmp_path / "small"), f"{remote}dir/f{n}")
        s3cmd("put", str(tmp_path / "small"), f"{remote}dir/d{n}/x")
    listed = s3cmd("ls", remote + "dir/").decode()
    assert all(f"{remote}dir/d{n}/" in listed and f"{remote}dir/f{n}" in listed for n in (1, 2, 3)), listed
    url = s3cmd("signurl", remote + "small", "+300").decode().strip()
    with urllib.request.urlopen(url, timeout=30) as answer:
        assert answer.read() == small
    s3cmd("del", remote + "copy")
    s3cmd("del", "--recursive", "--force", remote + "dir/")  # one multi-object delete
    assert s3cmd("ls", "--recursive", remote + "dir/").strip() == b""
    upload = abandoned_upload(stack, "s3cmd/abandoned")
    assert upload in s3cmd("multipart", "s3://demo").decode()
    s3cmd("abortmp", remote + "abandoned", upload)
    assert open_uploads(stack, "s3cmd/") == []
    assert sent_payload_modes(s3cmd.log) == ["hex payload hash"]
