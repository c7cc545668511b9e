//! Every file a command reads is opened one careful way: a FIFO, a device or a link to one is
//! refused as "not a regular file" (never a hang, never a read without end), an image that claims
//! more pixels than the cap is refused before it is decoded.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

mod common;

/// Runs the trainer with `args`, killed after 20 s (a hang fails the test, not CI).
fn trainer(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    panic!("trainer {args:?} hung");
}

fn refused(out: &Output, says: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(says), "{stderr}");
}

const MODEL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../firmware-example/model/mlp-int8.bin"
);

#[test]
fn fifos_and_devices_are_not_read() {
    let dir = common::temp_dir("bounded-fifo");
    let fifo = dir.join("f.png");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let fifo = fifo.to_str().unwrap();
    let not_regular = "not a regular file";
    // The image after a good one: the good one is answered, the FIFO refused.
    let image = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/handwritten-3.pgm");
    let out = trainer(&["predict", MODEL, image, fifo]);
    refused(&out, not_regular);
    assert!(String::from_utf8_lossy(&out.stdout).contains("handwritten-3.pgm: 3"));
    for args in [
        vec!["inspect", "/dev/zero"],
        vec!["eval", "/dev/zero"],
        vec!["export", fifo, "--format", "c", "-o", "/tmp/never.h"],
        vec!["import", "/dev/zero"],
    ] {
        refused(&trainer(&args), not_regular);
    }
    // A data folder whose SHA256SUMS is a link to /dev/zero.
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::os::unix::fs::symlink("/dev/zero", data.join("SHA256SUMS")).unwrap();
    let mnist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/mnist");
    for f in ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"] {
        std::fs::copy(mnist.join(f), data.join(f)).unwrap();
    }
    refused(
        &trainer(&["eval", MODEL, "--data", data.to_str().unwrap()]),
        not_regular,
    );
}

/// A PNG whose header claims 12000 × 12000 RGB pixels (432 MB decoded) in a few hundred bytes.
#[test]
fn an_image_bomb_is_refused_before_decoding() {
    let dir = common::temp_dir("bounded-bomb");
    let crc = |bytes: &[u8]| {
        // CRC-32 (ISO-HDLC), bit by bit: enough for three chunks.
        let mut c = !0u32;
        for &b in bytes {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 == 1 {
                    (c >> 1) ^ 0xEDB8_8320
                } else {
                    c >> 1
                };
            }
        }
        !c
    };
    let chunk = |kind: &[u8], data: &[u8]| {
        let mut c = (data.len() as u32).to_be_bytes().to_vec();
        let body = [kind, data].concat();
        c.extend(&body);
        c.extend(crc(&body).to_be_bytes());
        c
    };
    let mut ihdr = 12_000u32.to_be_bytes().to_vec();
    ihdr.extend(12_000u32.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    let png = [
        b"\x89PNG\r\n\x1a\n".to_vec(),
        chunk(b"IHDR", &ihdr),
        chunk(b"IEND", &[]),
    ]
    .concat();
    let bomb = dir.join("bomb.png");
    std::fs::write(&bomb, png).unwrap();
    refused(
        &trainer(&["predict", MODEL, bomb.to_str().unwrap()]),
        "at most 8192 × 8192 pixels",
    );
}

/// A JPEG cut short (a failed download, a partial copy) is refused, not answered; the whole file,
/// and one with an EXIF-style thumbnail segment ending in its own end-of-image marker, is read.
#[test]
fn a_truncated_jpeg_is_an_error_not_an_answer() {
    let dir = common::temp_dir("truncated-jpeg");
    let model =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../firmware-example/model/mlp-int8.bin");
    let image = image::GrayImage::from_fn(120, 120, |x, y| {
        image::Luma([if (50..70).contains(&x) && (15..105).contains(&y) {
            20
        } else {
            240
        }])
    });
    let mut jpeg = Vec::new();
    image::DynamicImage::ImageLuma8(image)
        .write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    // A thumbnail-like APP1 segment right after SOI: its bytes end with FF D9.
    let mut with_app1 = jpeg[..2].to_vec();
    let payload = [b"Exif\0\0".as_slice(), &[0xFF, 0xD8, 0x00, 0xFF, 0xD9]].concat();
    with_app1.extend([0xFF, 0xE1]);
    with_app1.extend(u16::try_from(payload.len() + 2).unwrap().to_be_bytes());
    with_app1.extend(&payload);
    with_app1.extend(&jpeg[2..]);
    let cut = with_app1.len() * 2 / 3;
    let files = [
        ("whole.jpg", &with_app1[..]),
        ("cut.jpg", &with_app1[..cut]),
    ];
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_trainer"))
        .arg("predict")
        .arg(&model)
        .args(files.map(|(name, _)| dir.join(name)))
        .arg("--json")
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
    let results: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert!(results[0]["digit"].is_u64(), "{results}");
    let error = results[1]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("cut.jpg") && error.contains("truncated"),
        "{results}"
    );
}
