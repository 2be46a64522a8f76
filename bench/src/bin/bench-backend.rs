//! `bench-backend --spec FILE`: one process, one HTTP endpoint per entry of the spec (a JSON
//! list of `EndpointSpec`), all on 127.0.0.1 with kernel-chosen ports, printed as
//! `ready ADDR ADDR…` on stdout. `POST /__bench/start` (to any endpoint) starts the shared
//! clock the scripted phases refer to; before it, every endpoint behaves normally. While an
//! endpoint is down its port is closed (connections refused) and its open connections are
//! closed, requests in service unanswered; it listens on the same port again afterwards.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use s3mesh_bench::http1::{read_head, skip_message_body};
use s3mesh_bench::scenario::EndpointSpec;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

static START: OnceLock<Instant> = OnceLock::new();
const BODY: &[u8] = &[b'x'; 512];
/// How often a listener or an idle connection looks whether its endpoint went down.
const DOWN_POLL: Duration = Duration::from_millis(20);

fn elapsed_ms() -> Option<f64> {
    START.get().map(|s| s.elapsed().as_secs_f64() * 1000.0)
}

async fn respond(
    stream: &mut BufReader<TcpStream>,
    status: u16,
    index: usize,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-length: {}\r\nx-bench-endpoint: {index}\r\n\r\n",
        BODY.len()
    );
    let s = stream.get_mut();
    s.write_all(head.as_bytes()).await?;
    s.write_all(BODY).await
}

async fn serve(
    stream: TcpStream,
    index: usize,
    spec: Arc<EndpointSpec>,
    slots: Arc<Semaphore>,
) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut stream = BufReader::new(stream);
    let down = || is_down(&spec);
    loop {
        let head = tokio::select! {
            head = read_head(&mut stream) => head?,
            () = until(down) => return Ok(()),
        };
        let Some(head) = head else {
            break;
        };
        if down() {
            return Ok(());
        }
        if head.start.starts_with("POST /__bench/start") {
            let _ = START.set(Instant::now());
            skip_message_body(&mut stream, &head).await?;
            respond(&mut stream, 200, index).await?;
            continue;
        }
        if head
            .header("expect")
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
        {
            stream
                .get_mut()
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await?;
        }
        skip_message_body(&mut stream, &head).await?;
        let failure = elapsed_ms().and_then(|t| spec.failure_at(t));
        let status = match failure {
            Some(status) => status,
            None => {
                let Ok(_permit) = slots.acquire().await else {
                    return Ok(());
                };
                let service = elapsed_ms().map_or(spec.service_ms, |t| spec.service_ms_at(t));
                // A zero service time answers at once (a zero sleep would wait for the timer's
                // next 1 ms tick).
                if service > 0.0 {
                    tokio::time::sleep(Duration::from_secs_f64(service / 1000.0)).await;
                }
                let hold = elapsed_ms().map_or(0.0, |t| spec.stall_remaining_ms(t));
                if hold > 0.0 {
                    tokio::time::sleep(Duration::from_secs_f64(hold / 1000.0)).await;
                }
                if down() {
                    return Ok(());
                }
                200
            }
        };
        respond(&mut stream, status, index).await?;
        if head.closes() {
            break;
        }
    }
    Ok(())
}

/// Whether `spec`'s endpoint is down now (never before the shared clock starts).
fn is_down(spec: &EndpointSpec) -> bool {
    elapsed_ms().is_some_and(|t| spec.down_at(t))
}

/// Returns once `condition` holds, looking every [`DOWN_POLL`].
async fn until(condition: impl Fn() -> bool) {
    while !condition() {
        tokio::time::sleep(DOWN_POLL).await;
    }
}

/// Accepts endpoint `index`'s connections; closes its port while it is down.
async fn listen(
    mut listener: TcpListener,
    index: usize,
    spec: Arc<EndpointSpec>,
    slots: Arc<Semaphore>,
) -> std::io::Result<()> {
    let address = listener.local_addr()?;
    let down = || is_down(&spec);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = accepted?;
                tokio::spawn(serve(stream, index, Arc::clone(&spec), Arc::clone(&slots)));
            }
            () = until(down) => {
                drop(listener);
                until(|| !down()).await;
                listener = TcpListener::bind(address).await?;
            }
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(flag), Some(path)) = (args.next(), args.next()) else {
        return Err("usage: bench-backend --spec FILE".into());
    };
    if flag != "--spec" {
        return Err("usage: bench-backend --spec FILE".into());
    }
    let specs: Vec<EndpointSpec> = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    let mut addresses = Vec::new();
    for (index, spec) in specs.into_iter().enumerate() {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        addresses.push(listener.local_addr()?.to_string());
        let slots = Arc::new(Semaphore::new(spec.slots));
        tokio::spawn(listen(listener, index, Arc::new(spec), slots));
    }
    println!("ready {}", addresses.join(" "));
    tokio::signal::ctrl_c().await?;
    Ok(())
}
