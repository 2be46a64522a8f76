// The AWS SDK for JavaScript v3 (`@aws-sdk/client-s3`, `@aws-sdk/lib-storage`,
// `@aws-sdk/s3-request-presigner`) configured as its users configure it: path style, its default
// flexible checksums, dummy keys (s3mesh re-signs every request). Runs every operation of the
// client matrix against `--endpoint` in `--bucket` under `--prefix`, comparing bytes, and prints a
// JSON report: the checks passed, and per operation the `x-amz-content-sha256` and checksum
// headers each request carried when it left the SDK (tests/test_clients.py reads it).
//
// Usage: node scenario.mjs --endpoint URL --bucket B --prefix P [--keys k1,k2,...]

import { createHash, randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { parseArgs } from "node:util";

import {
  AbortMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";

const { values: args } = parseArgs({
  options: {
    endpoint: { type: "string" },
    bucket: { type: "string" },
    prefix: { type: "string" },
    keys: { type: "string", default: "with space.txt,plus+sign,pct%literal,a//double,unicode-é-日本" },
  },
});
const { endpoint, bucket, prefix } = args;

const client = new S3Client({
  endpoint,
  region: "us-east-1",
  forcePathStyle: true,
  credentials: { accessKeyId: "AKIDDUMMYKEY", secretAccessKey: "dummy-secret-s3mesh-replaces" },
  maxAttempts: 1,
});

// Every request as it leaves the SDK (after signing): its payload mode and checksum headers.
const modes = {};
// Named in the report when the scenario fails: every failed request, in order.
const failures = [];
process.on("uncaughtException", (error) => {
  console.error(`failed requests:\n${failures.join("\n")}\nthen: ${error.name} ${error.message}`);
  process.exit(1);
});
client.middlewareStack.add(
  (next, context) => async (input) => {
    const request = `${context.commandName} ${input.request.method} ${input.request.path}`;
    const headers = input.request.headers ?? {};
    const hash = headers["x-amz-content-sha256"] ?? "-";
    const checksum = Object.keys(headers).filter((h) => h.startsWith("x-amz-checksum-") || h === "x-amz-trailer");
    const mode = `${/^[0-9a-f]{64}$/.test(hash) ? "hex payload hash" : hash}${checksum.length ? ` + ${checksum.sort().join(", ")}` : ""}`;
    (modes[context.commandName.replace(/Command$/, "")] ??= new Set()).add(mode);
    try {
      return await next(input);
    } catch (error) {
      failures.push(`${request}: ${error.name} ${error.$metadata?.httpStatusCode ?? ""} ${error.message}`);
      throw error;
    }
  },
  { step: "finalizeRequest", priority: "low", name: "s3meshRecordModes" },
);

const passed = [];
const sha = (bytes) => createHash("sha256").update(bytes).digest("hex");
const body = async (out) => Buffer.from(await out.Body.transformToByteArray());
function expect(condition, what) {
  if (!condition) throw new Error(`check failed: ${what}`);
}

async function roundTrip(key, bytes) {
  await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: bytes }));
  const got = await body(await client.send(new GetObjectCommand({ Bucket: bucket, Key: key })));
  expect(sha(got) === sha(bytes), `${key}: the bytes read back differ`);
}

const small = randomBytes(1000);
await roundTrip(`${prefix}empty`, Buffer.alloc(0));
passed.push("empty object");
await roundTrip(`${prefix}small`, small);
passed.push("small object");

// A stream body (a file or a pipe, as users upload them): the SDK frames it as aws-chunked with
// a checksum trailer.
const streamed = randomBytes(300_000);
await client.send(new PutObjectCommand({
  Bucket: bucket, Key: `${prefix}streamed`, ContentLength: streamed.length,
  Body: Readable.from([streamed.subarray(0, 100_000), streamed.subarray(100_000)]),
}));
const gotStreamed = await body(await client.send(new GetObjectCommand({ Bucket: bucket, Key: `${prefix}streamed` })));
expect(sha(gotStreamed) === sha(streamed), "streamed object read back");
passed.push("stream upload");

// Larger than lib-storage's part size (5 MiB): a multipart upload with its default checksums.
const large = randomBytes(11 * 1024 * 1024 + 7);
await new Upload({ client, params: { Bucket: bucket, Key: `${prefix}large`, Body: large } }).done();
const gotLarge = await body(await client.send(new GetObjectCommand({ Bucket: bucket, Key: `${prefix}large` })));
expect(sha(gotLarge) === sha(large), "multipart object read back");
passed.push("multipart upload");

const range = await body(await client.send(new GetObjectCommand({ Bucket: bucket, Key: `${prefix}small`, Range: "bytes=100-199" })));
expect(range.equals(small.subarray(100, 200)), "range GET");
passed.push("range GET");

const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: `${prefix}small` }));
expect(head.ContentLength === small.length, "HEAD length");
passed.push("HEAD");

await client.send(new CopyObjectCommand({ Bucket: bucket, Key: `${prefix}copy`, CopySource: `${bucket}/${prefix}small` }));
const copied = await body(await client.send(new GetObjectCommand({ Bucket: bucket, Key: `${prefix}copy` })));
expect(copied.equals(small), "copy");
passed.push("copy");

for (const key of args.keys.split(",")) {
  await roundTrip(`${prefix}keys/${key}`, Buffer.from(key));
}
passed.push("awkward keys");

// Listing by prefix and delimiter, two keys a page.
for (const n of [1, 2, 3]) {
  await client.send(new PutObjectCommand({ Bucket: bucket, Key: `${prefix}dir/d${n}/x`, Body: "x" }));
  await client.send(new PutObjectCommand({ Bucket: bucket, Key: `${prefix}dir/f${n}`, Body: "x" }));
}
const seen = { keys: [], prefixes: [] };
let token;
let pages = 0;
do {
  const page = await client.send(new ListObjectsV2Command({
    Bucket: bucket, Prefix: `${prefix}dir/`, Delimiter: "/", MaxKeys: 2, ContinuationToken: token,
  }));
  seen.keys.push(...(page.Contents ?? []).map((o) => o.Key));
  seen.prefixes.push(...(page.CommonPrefixes ?? []).map((p) => p.Prefix));
  token = page.NextContinuationToken;
  pages += 1;
} while (token);
expect(seen.keys.length === 3 && seen.prefixes.length === 3 && pages >= 3, `listing: ${JSON.stringify(seen)}`);
passed.push("list with prefix, delimiter and pages");

const upload = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: `${prefix}aborted` }));
await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: `${prefix}aborted`, UploadId: upload.UploadId }));
// Gone: the store refuses a part sent to it (moto with 403, s3s-fs with 500: each store's own
// answer, passed on).
const accepted = await client
  .send(new UploadPartCommand({ Bucket: bucket, Key: `${prefix}aborted`, UploadId: upload.UploadId, PartNumber: 1, Body: "x" }))
  .then(() => true, () => false);
expect(!accepted, "the store took a part for the aborted upload");
passed.push("multipart abort");

// Presigned URLs, fetched with Node's own HTTP client as a browser or curl would.
const putUrl = await getSignedUrl(client, new PutObjectCommand({ Bucket: bucket, Key: `${prefix}presigned` }), { expiresIn: 300 });
const put = await fetch(putUrl, { method: "PUT", body: small });
expect(put.ok, `presigned PUT: ${put.status} ${await put.text()}`);
const getUrl = await getSignedUrl(client, new GetObjectCommand({ Bucket: bucket, Key: `${prefix}presigned` }), { expiresIn: 300 });
const get = await fetch(getUrl);
expect(get.ok && Buffer.from(await get.arrayBuffer()).equals(small), `presigned GET: ${get.status}`);
passed.push("presigned PUT and GET");

await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: `${prefix}copy` }));
const batch = ["small", "empty", "streamed", "large", "presigned"].map((k) => ({ Key: `${prefix}${k}` }));
const deleted = await client.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: batch } }));
expect((deleted.Deleted ?? []).length === batch.length && !(deleted.Errors ?? []).length, `batch delete: ${JSON.stringify(deleted.Errors)}`);
const left = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: `${prefix}small` }));
expect(!(left.Contents ?? []).length, "deleted object still listed");
passed.push("delete and batch delete");

const payloadModes = Object.fromEntries(Object.entries(modes).map(([op, set]) => [op, [...set]]));
console.log(JSON.stringify({ passed, payload_modes: payloadModes }));
