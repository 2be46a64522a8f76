//! `s3mesh-aws-sdk-client --endpoint URL --bucket B --prefix P`: drives `aws-sdk-s3` (Rust)
//! through an s3mesh Envoy the way a service would, with placeholder credentials that s3mesh
//! replaces, and checks every object by reading it back.
//!
//! Covers: `PutObject` with the SDK's default payload mode (which the run reports), awkward
//! keys (`//`, `%2F`, `+`, spaces, unicode), a multi-MiB upload, multipart upload with CRC32
//! part checksums, copy, range GET, listing, presigned GET and PUT (sent as raw HTTP), delete.
//! Prints a JSON report (the `x-amz-content-sha256` values sent per operation, checks passed;
//! presigning does not transmit, so it records none); exits
//! non-zero at the first mismatch, naming it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_s3::config::{
    BehaviorVersion, ConfigBag, Credentials, Intercept, Region, RuntimeComponents,
};
use aws_sdk_s3::error::BoxError;
use aws_sdk_s3::presigning::{PresignedRequest, PresigningConfig};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Records the payload mode (`x-amz-content-sha256`) of every request, by operation.
#[derive(Debug, Default, Clone)]
struct PayloadModes(Arc<Mutex<BTreeMap<String, BTreeSet<String>>>>);

impl Intercept for PayloadModes {
    fn name(&self) -> &'static str {
        "PayloadModes"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let operation = cfg
            .load::<aws_smithy_runtime_api::client::orchestrator::Metadata>()
            .map(|m| m.name().to_owned())
            .unwrap_or_default();
        let mode = context
            .request()
            .headers()
            .get("x-amz-content-sha256")
            .unwrap_or("-")
            .to_owned();
        if let Ok(mut modes) = self.0.lock() {
            modes.entry(operation).or_default().insert(mode);
        }
        Ok(())
    }
}

struct Args {
    endpoint: String,
    bucket: String,
    prefix: String,
    keys: Vec<String>,
}

/// Keys that trip up path handling; `--keys` replaces them for stores that map keys to files.
const AWKWARD_KEYS: &str = "a//b,dir%2Fname,plus+sign,with space,unicode-ü-日本";

fn parse_args() -> Result<Args, String> {
    let mut endpoint = None;
    let mut bucket = None;
    let mut prefix = String::from("aws-sdk-rust/");
    let mut keys = AWKWARD_KEYS.to_owned();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--endpoint" => endpoint = Some(value),
            "--bucket" => bucket = Some(value),
            "--prefix" => prefix = value,
            "--keys" => keys = value,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(Args {
        endpoint: endpoint.ok_or("--endpoint is required")?,
        bucket: bucket.ok_or("--bucket is required")?,
        prefix,
        keys: keys.split(',').map(str::to_owned).collect(),
    })
}

/// Deterministic, non-repeating test bytes.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
        .collect()
}

fn fail(what: &str, error: impl std::fmt::Display) -> String {
    format!("{what}: {error}")
}

/// An SDK error with its whole chain of causes (the service's code and message included).
fn sdk_fail(what: &str, error: impl std::error::Error) -> String {
    fail(what, aws_sdk_s3::error::DisplayErrorContext(error))
}

/// Compares, naming the check.
fn same(what: &str, got: &[u8], want: &[u8]) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!(
            "{what}: read back {} bytes that differ from the {} sent",
            got.len(),
            want.len()
        ))
    }
}

struct Run {
    client: Client,
    bucket: String,
    prefix: String,
    passed: Vec<String>,
}

impl Run {
    async fn put(&self, key: &str, body: &[u8]) -> Result<(), String> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(body.to_vec()))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sdk_fail(&format!("PutObject {key:?}"), e))
    }

    async fn get(&self, key: &str, range: Option<&str>) -> Result<Vec<u8>, String> {
        let output = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .set_range(range.map(str::to_owned))
            .send()
            .await
            .map_err(|e| sdk_fail(&format!("GetObject {key:?}"), e))?;
        let bytes = output
            .body
            .collect()
            .await
            .map_err(|e| fail(&format!("GetObject {key:?} body"), e))?;
        Ok(bytes.into_bytes().to_vec())
    }

    async fn round_trip(&mut self, name: &str, key: &str, body: &[u8]) -> Result<(), String> {
        self.put(key, body).await?;
        same(name, &self.get(key, None).await?, body)?;
        self.passed.push(name.to_owned());
        Ok(())
    }

    async fn multipart(&mut self, key: &str) -> Result<Vec<u8>, String> {
        let c = &self.client;
        let upload = c
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .send()
            .await
            .map_err(|e| sdk_fail("CreateMultipartUpload", e))?;
        let id = upload.upload_id().unwrap_or_default().to_owned();
        let parts = [pattern(5 * 1024 * 1024, 1), pattern(1024 * 1024 + 7, 2)];
        let mut completed = Vec::new();
        for (i, body) in parts.iter().enumerate() {
            let number = i as i32 + 1;
            let part = c
                .upload_part()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(&id)
                .part_number(number)
                .checksum_algorithm(ChecksumAlgorithm::Crc32)
                .body(ByteStream::from(body.clone()))
                .send()
                .await
                .map_err(|e| sdk_fail(&format!("UploadPart {number}"), e))?;
            completed.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(part.e_tag().map(str::to_owned))
                    .set_checksum_crc32(part.checksum_crc32().map(str::to_owned))
                    .build(),
            );
        }
        c.complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(&id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(completed))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| sdk_fail("CompleteMultipartUpload", e))?;
        let whole = parts.concat();
        same("multipart", &self.get(key, None).await?, &whole)?;
        self.passed.push("multipart".to_owned());
        Ok(whole)
    }

    fn presign_config(&self) -> Result<PresigningConfig, String> {
        PresigningConfig::expires_in(Duration::from_secs(300)).map_err(|e| fail("presign", e))
    }

    async fn presigned(&mut self, key: &str, body: &[u8]) -> Result<(), String> {
        let put = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(self.presign_config()?)
            .await
            .map_err(|e| fail("presign PUT", e))?;
        let (status, _) = send_raw(&put, body).await?;
        if status != 200 {
            return Err(format!("presigned PUT answered {status}"));
        }
        let get = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(self.presign_config()?)
            .await
            .map_err(|e| fail("presign GET", e))?;
        let (status, got) = send_raw(&get, b"").await?;
        if status != 200 {
            return Err(format!("presigned GET answered {status}"));
        }
        same("presigned PUT then GET", &got, body)?;
        self.passed.push("presigned PUT and GET".to_owned());
        Ok(())
    }
}

/// Sends a presigned request as plain HTTP/1.1 (as `curl` would) and returns status and body.
async fn send_raw(request: &PresignedRequest, body: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let uri = request.uri();
    let rest = uri
        .strip_prefix("http://")
        .ok_or_else(|| format!("not an http URL: {uri}"))?;
    let (authority, target) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut stream = tokio::net::TcpStream::connect(authority)
        .await
        .map_err(|e| fail("connect", e))?;
    let mut head = format!(
        "{} {target} HTTP/1.1\r\nhost: {authority}\r\nconnection: close\r\ncontent-length: {}\r\n",
        request.method(),
        body.len()
    );
    for (name, value) in request.headers() {
        if !name.eq_ignore_ascii_case("host") {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .await
        .map_err(|e| fail("send", e))?;
    stream.write_all(body).await.map_err(|e| fail("send", e))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .await
        .map_err(|e| fail("receive", e))?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("response without a header end")?;
    let head = String::from_utf8_lossy(&response[..split]).to_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("response without a status")?;
    let payload = &response[split + 4..];
    let payload = if head.contains("transfer-encoding: chunked") {
        dechunk(payload)?
    } else {
        payload.to_vec()
    };
    Ok((status, payload))
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("bad chunk")?;
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|e| fail("chunk size", e))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(data.get(..size).ok_or("short chunk")?);
        data = data.get(size + 2..).ok_or("short chunk")?;
    }
}

async fn run(args: Args) -> Result<serde_json::Value, String> {
    let modes = PayloadModes::default();
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        // Placeholders: s3mesh signs with the caller's own profile; these keys open nothing.
        .credentials_provider(Credentials::new(
            "AKIDPLACEHOLDER00000",
            "placeholder-not-a-secret",
            None,
            None,
            "placeholder",
        ))
        .endpoint_url(&args.endpoint)
        .force_path_style(true)
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .interceptor(modes.clone())
        .build();
    let mut run = Run {
        client: Client::from_conf(config),
        bucket: args.bucket.clone(),
        prefix: args.prefix.clone(),
        passed: Vec::new(),
    };
    let p = run.prefix.clone();
    run.round_trip("small object", &format!("{p}small"), &pattern(1024, 3))
        .await?;
    run.round_trip("empty object", &format!("{p}empty"), b"")
        .await?;
    run.round_trip(
        "6 MiB object",
        &format!("{p}large"),
        &pattern(6 * 1024 * 1024, 4),
    )
    .await?;
    for (i, key) in args.keys.iter().enumerate() {
        let body = pattern(100 + i, 5 + i as u8);
        run.round_trip(&format!("key {key:?}"), &format!("{p}{key}"), &body)
            .await?;
    }
    let whole = run.multipart(&format!("{p}multipart")).await?;
    let range = run
        .get(&format!("{p}multipart"), Some("bytes=5242800-5242999"))
        .await?;
    same("range GET", &range, &whole[5_242_800..5_243_000])?;
    run.passed.push("range GET".to_owned());
    run.client
        .copy_object()
        .bucket(&run.bucket)
        .key(format!("{p}copy"))
        .copy_source(format!("{}/{p}small", run.bucket))
        .send()
        .await
        .map_err(|e| sdk_fail("CopyObject", e))?;
    same(
        "copy",
        &run.get(&format!("{p}copy"), None).await?,
        &pattern(1024, 3),
    )?;
    run.passed.push("copy".to_owned());
    run.presigned(&format!("{p}presigned"), &pattern(4096, 9))
        .await?;
    let listed = run
        .client
        .list_objects_v2()
        .bucket(&run.bucket)
        .prefix(&p)
        .send()
        .await
        .map_err(|e| sdk_fail("ListObjectsV2", e))?;
    let keys: Vec<String> = listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect();
    for key in ["small", "large", "multipart", "copy", "presigned"] {
        if !keys.contains(&format!("{p}{key}")) {
            return Err(format!("ListObjectsV2: {p}{key} missing from {keys:?}"));
        }
    }
    run.passed.push("list".to_owned());
    for key in &keys {
        run.client
            .delete_object()
            .bucket(&run.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| sdk_fail(&format!("DeleteObject {key:?}"), e))?;
    }
    run.passed.push("delete".to_owned());
    let modes = modes.0.lock().map(|m| m.clone()).unwrap_or_default();
    Ok(serde_json::json!({"passed": run.passed, "payload_modes": modes}))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let result = match parse_args() {
        Ok(args) => run(args).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(report) => {
            println!("{report}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("s3mesh-aws-sdk-client: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
