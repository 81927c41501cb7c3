//! A recording plays in Chromium: headless Chromium loads the finished file in a `<video>`,
//! starts it and reports what happened (`--dump-dom` after a few seconds of virtual time).
//! Chromium's FFmpegDemuxer seeks to the file's start time when playback starts; a file whose
//! Opus track starts before its video (the track's `CodecDelay` is subtracted from its times)
//! fails there with `PIPELINE_ERROR_READ: FFmpegDemuxer: demuxer seek failed`, which GStreamer's
//! own demuxer does not mind. Set `RECORDER_KEEP_FILE=1` to keep the file and the page.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use recorder::pipeline::{Format, Kind, Pipeline};

#[path = "support/source.rs"]
mod source;
use source::Source;

const CHROMIUM: &[&str] = &[
    "/usr/lib/chromium/chromium",
    "/usr/bin/chromium",
    "/usr/bin/chromium-browser",
    "/usr/bin/google-chrome",
];

/// What the page saw of `file` in headless Chromium: its log, one event a line.
fn play_in_chromium(chromium: &Path, file: &Path) -> String {
    let dir = file.parent().unwrap();
    let name = file.file_name().unwrap().to_string_lossy();
    let page = dir.join("play.html");
    std::fs::write(
        &page,
        format!(
            r#"<html><body><video id=v muted src="{name}"></video><pre id=o>no report</pre>
<script>
const v=document.getElementById('v'), o=document.getElementById('o'); let log=[];
v.addEventListener('error',()=>log.push('error '+v.error.message));
v.addEventListener('loadedmetadata',()=>{{log.push('meta d='+v.duration); v.play().then(()=>log.push('playing')).catch(e=>log.push('play failed '+e));}});
setTimeout(()=>{{log.push('t='+v.currentTime); o.textContent='REPORT\n'+log.join('\n')+'\nEND';}},4000);
</script></body></html>"#
        ),
    )
    .unwrap();
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--mute-audio",
            "--autoplay-policy=no-user-gesture-required",
            "--allow-file-access-from-files",
            "--virtual-time-budget=6000",
            "--dump-dom",
        ])
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs");
    let dom = String::from_utf8_lossy(&out.stdout).to_string();
    match (dom.find("REPORT\n"), dom.find("\nEND")) {
        (Some(a), Some(b)) if a < b => dom[a + 7..b].to_owned(),
        _ => panic!(
            "no report from chromium: {dom}\n{}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

#[test]
fn a_recording_plays_in_chromium() {
    let chromium = CHROMIUM
        .iter()
        .map(Path::new)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "chromium is needed for this test (apt-get install chromium): none of {CHROMIUM:?}"
            )
        });
    let dir = std::env::temp_dir().join(format!("recorder-chromium-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("class.webm");
    let format = Format {
        width: 640,
        height: 360,
        fps: 15,
        video_bps: 600_000,
    };
    let started = Instant::now();
    let mut rec = Pipeline::start(&path, format).unwrap();
    rec.add_track("ann-cam", Kind::Video, 96, false).unwrap();
    rec.add_track("ann-mic", Kind::Audio, 111, false).unwrap();
    let (video, audio) = (
        Source::new(Kind::Video, "ball"),
        Source::new(Kind::Audio, ""),
    );
    while started.elapsed() < Duration::from_secs(4) {
        for p in video.drain(Duration::from_millis(5)) {
            rec.push_rtp("ann-cam", &p).unwrap();
        }
        for p in audio.drain(Duration::ZERO) {
            rec.push_rtp("ann-mic", &p).unwrap();
        }
    }
    drop((video, audio));
    let file = rec.stop(Duration::from_secs(20)).unwrap();

    let report = play_in_chromium(chromium, &file);
    assert!(
        report.lines().any(|l| l == "playing") && !report.contains("error"),
        "the recording plays in Chromium ({}): {report}",
        file.display()
    );
    if std::env::var_os("RECORDER_KEEP_FILE").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!("kept {}", file.display());
    }
}
