"""The same keyless requests against a second, independent SigV4 verifier: s3s-fs (two
instances on one root directory are one store with two endpoints). If s3mesh signed anything
other than what Envoy forwards, one of the two stores would notice."""

import os

import pytest
from botocore.exceptions import ClientError

from conftest import s3_client
from test_request_path import aws_cli

# s3s-fs maps keys to file paths, so keys with "//" or "./" segments cannot round-trip there;
# they are covered against moto.
KEYS = ["plain.txt", "with space.txt", "plus+sign", "unicode-é€-ключ", "pct%2Fliteral", "nested/dir/file"]


@pytest.mark.parametrize("key", KEYS)
def test_boto3_unsigned_round_trip_on_a_second_verifier(fs_stack, key):
    s3 = s3_client(fs_stack.url)
    body = os.urandom(2000) + key.encode()
    s3.put_object(Bucket="demo", Key=key, Body=body)
    assert s3.get_object(Bucket="demo", Key=key)["Body"].read() == body
    assert s3.head_object(Bucket="demo", Key=key)["ContentLength"] == len(body)
    if not set(key) & {"+", "%"}:
        # s3s-fs 0.14.1 leaves "+" and "%" unencoded in listings under encoding-type=url, so the
        # client reads "plus+sign" as "plus sign" and "pct%2Fliteral" as "pct/literal" (also
        # without s3mesh in the path). PUT, GET and HEAD of those keys are checked above.
        assert key in [o["Key"] for o in s3.list_objects_v2(Bucket="demo", Prefix=key).get("Contents", [])]
    s3.delete_object(Bucket="demo", Key=key)


def test_aws_cli_round_trip_on_a_second_verifier(fs_stack, tmp_path):
    src = tmp_path / "cli.bin"
    src.write_bytes(os.urandom(1024 * 1024))
    assert aws_cli(fs_stack, "s3", "cp", str(src), "s3://demo/cli.bin").returncode == 0
    back = tmp_path / "back.bin"
    assert aws_cli(fs_stack, "s3", "cp", "s3://demo/cli.bin", str(back)).returncode == 0
    assert back.read_bytes() == src.read_bytes()


def test_the_second_store_really_verifies_signatures(fs_stack):
    access_key, _ = fs_stack.credentials("local-dev")
    forged = s3_client(f"http://{fs_stack.endpoints[0]}", signed_with=(access_key, "not-the-secret"))
    with pytest.raises(ClientError) as refused:
        forged.list_objects_v2(Bucket="demo")
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
