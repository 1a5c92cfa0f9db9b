//! The download path, against a throwaway HTTP server on 127.0.0.1 (the real URL is
//! never contacted).

mod data_support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use data_support::*;
use md5::{Digest, Md5};
use models::data::{download, ensure_dataset_from, DataError};

/// What the server sends for one request.
enum Reply {
    Ok(Vec<u8>),
    /// Announces `Content-Length: announced` but sends `body` and hangs up.
    Short {
        body: Vec<u8>,
        announced: usize,
    },
    NotFound,
}

/// Serves `replies.len()` connections, one reply each, then exits. Gives up (rather
/// than hanging the test) if a client does not show up within 20 s.
fn serve(replies: Vec<Reply>) -> (String, JoinHandle<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    listener.set_nonblocking(true).unwrap();
    let handle = std::thread::spawn(move || {
        let mut served = 0;
        for reply in replies {
            let deadline = Instant::now() + Duration::from_secs(20);
            let stream = loop {
                match listener.accept() {
                    Ok((s, _)) => break Some(s),
                    Err(_) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Err(_) => break None,
                }
            };
            let Some(stream) = stream else { break };
            answer(stream, reply);
            served += 1;
        }
        served
    });
    (base, handle)
}

fn answer(mut stream: TcpStream, reply: Reply) {
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let (status, body, length) = match reply {
        Reply::Ok(body) => ("200 OK", body.clone(), body.len()),
        Reply::Short { body, announced } => ("200 OK", body, announced),
        Reply::NotFound => ("404 Not Found", b"no".to_vec(), 2),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/x-gzip\r\n\
         Content-Length: {length}\r\nConnection: close\r\n\r\n"
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
    let _ = stream.flush();
}

fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn archive() -> Vec<u8> {
    tar_gz(&small_dataset(), "cifar-10-batches-bin/")
}

fn entries(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// A URL on a port nothing listens on.
fn refused_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/cifar-10-binary.tar.gz")
}

#[test]
fn good_download_is_checked_saved_and_loaded() {
    let bytes = archive();
    let (base, server) = serve(vec![Reply::Ok(bytes.clone())]);
    let url = format!("{base}/cifar-10-binary.tar.gz");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data"); // does not exist yet

    // The MD5 is accepted in any case.
    let md5 = md5_hex(&bytes).to_uppercase();
    let data = ensure_dataset_from(&dir, true, false, &url, &md5).unwrap();
    assert_eq!(server.join().unwrap(), 1);
    assert_eq!(data.train.len(), 12);
    assert_eq!(data.test.len(), 5);
    assert_eq!(data.train.image(4), pixels(1, 1).as_slice());

    assert_eq!(entries(&dir), vec!["cifar-10-binary.tar.gz".to_string()]);
    assert_eq!(
        std::fs::read(dir.join("cifar-10-binary.tar.gz")).unwrap(),
        bytes
    );

    // Next time the archive is found on disk: no server, no download.
    let again = ensure_dataset_from(&dir, true, false, &refused_url(), &md5).unwrap();
    assert_eq!(again.train, data.train);
}

#[test]
fn download_returns_the_saved_path() {
    let bytes = archive();
    let (base, server) = serve(vec![Reply::Ok(bytes.clone())]);
    let tmp = tempfile::tempdir().unwrap();
    let path = download(
        &format!("{base}/some/where/mirror.tgz?token=1"),
        tmp.path(),
        &md5_hex(&bytes),
        true, // a progress bar must not break anything when stderr is not a terminal
    )
    .unwrap();
    server.join().unwrap();
    assert_eq!(path, tmp.path().join("mirror.tgz"));
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

#[test]
fn wrong_md5_is_rejected_and_leaves_no_file() {
    let bytes = archive();
    let (base, server) = serve(vec![Reply::Ok(bytes)]);
    let url = format!("{base}/cifar-10-binary.tar.gz");
    let tmp = tempfile::tempdir().unwrap();
    let err = ensure_dataset_from(
        tmp.path(),
        true,
        false,
        &url,
        "c32a1d4ab5d03f1284b67883e8d87530",
    )
    .unwrap_err();
    server.join().unwrap();
    assert!(matches!(err, DataError::ChecksumMismatch { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("MD5") && msg.contains("c32a1d4ab5d03f1284b67883e8d87530"),
        "{msg}"
    );
    assert_eq!(entries(tmp.path()), Vec::<String>::new());
}

#[test]
fn refused_connection_gives_the_offline_message() {
    let tmp = tempfile::tempdir().unwrap();
    let url = refused_url();
    let err = ensure_dataset_from(tmp.path(), true, false, &url, "00").unwrap_err();
    assert!(matches!(err, DataError::Unreachable { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.starts_with(&format!("could not reach {url}")), "{msg}");
    assert!(
        msg.contains("download the archive by hand from") && msg.contains("--data PATH"),
        "{msg}"
    );
    assert!(msg.contains("CIFAR10_PATH"), "{msg}");
    assert_eq!(entries(tmp.path()), Vec::<String>::new());
}

#[test]
fn http_error_status_is_reported() {
    let (base, server) = serve(vec![Reply::NotFound]);
    let url = format!("{base}/cifar-10-binary.tar.gz");
    let tmp = tempfile::tempdir().unwrap();
    let err = download(&url, tmp.path(), "00", false).unwrap_err();
    server.join().unwrap();
    assert!(
        matches!(err, DataError::HttpStatus { status: 404, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("404"), "{err}");
    assert_eq!(entries(tmp.path()), Vec::<String>::new());
}

#[test]
fn connection_dropped_mid_body_leaves_no_file() {
    let bytes = archive();
    let half = bytes[..bytes.len() / 2].to_vec();
    let (base, server) = serve(vec![Reply::Short {
        body: half,
        announced: bytes.len(),
    }]);
    let url = format!("{base}/cifar-10-binary.tar.gz");
    let tmp = tempfile::tempdir().unwrap();
    let err = download(&url, tmp.path(), &md5_hex(&bytes), false).unwrap_err();
    server.join().unwrap();
    assert!(
        matches!(err, DataError::DownloadInterrupted { .. }),
        "{err:?}"
    );
    assert_eq!(entries(tmp.path()), Vec::<String>::new());
}

#[test]
fn no_request_is_made_when_download_is_not_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    let err = ensure_dataset_from(tmp.path(), false, false, &refused_url(), "00").unwrap_err();
    assert!(matches!(err, DataError::NoDataset { .. }), "{err:?}");
}

#[test]
fn an_offline_download_leaves_no_folder_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data").join("cifar");
    let err = ensure_dataset_from(&dir, true, false, &refused_url(), "00").unwrap_err();
    assert!(matches!(err, DataError::Unreachable { .. }), "{err:?}");
    assert!(
        !tmp.path().join("data").exists(),
        "{:?}",
        entries(tmp.path())
    );

    // A download that starts and then breaks off removes the folders it made.
    let bytes = archive();
    let (base, server) = serve(vec![Reply::Short {
        body: bytes[..bytes.len() / 2].to_vec(),
        announced: bytes.len(),
    }]);
    let err = download(&format!("{base}/x.tar.gz"), &dir, "00", false).unwrap_err();
    server.join().unwrap();
    assert!(
        matches!(err, DataError::DownloadInterrupted { .. }),
        "{err:?}"
    );
    assert_eq!(entries(tmp.path()), Vec::<String>::new());
}
