//! TensorBoard event files.
//!
//! tensorboard-rs 0.5 writes from a background thread that panics on any I/O error, and its
//! image summary mixes up height and width. This writer uses only its record framing
//! (length, masked CRC32C) and its scalar summary, writes synchronously and returns every
//! I/O error, so a full disk or a removed folder becomes an error instead of a panic.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use protobuf::{Message, RepeatedField};
use tensorboard_proto::event::Event;
use tensorboard_proto::summary::{Summary, Summary_Image, Summary_Value};
use tensorboard_rs::record_writer::RecordWriter;

use crate::error::{Error, Result};

/// One `events.out.tfevents.*` file.
pub struct EventWriter {
    path: PathBuf,
    records: RecordWriter<BufWriter<File>>,
}

impl EventWriter {
    /// Creates `dir` and a new event file in it, starting with the file-version record.
    pub fn create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|error| Error::io("create", dir, error))?;
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let name = format!(
            "events.out.tfevents.{:010}.{}.{}.{}",
            now.as_secs(),
            hostname(),
            std::process::id(),
            now.subsec_nanos()
        );
        let path = dir.join(name);
        let file = File::create(&path).map_err(|error| Error::io("create", &path, error))?;
        let mut writer = Self {
            path,
            records: RecordWriter::new(BufWriter::new(file)),
        };
        let mut event = Event::new();
        event.set_wall_time(now.as_secs_f64());
        event.set_file_version("brain.Event:2".into());
        writer.write_event(event)?;
        writer.flush()?;
        Ok(writer)
    }

    /// Reopens the event file `path` for appending after cutting it to its first `length`
    /// bytes, dropping the records written after a checkpoint that a resumed stage writes
    /// again.
    pub fn reopen(path: &Path, length: u64) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|error| Error::io("open", path, error))?;
        let current = file
            .metadata()
            .map_err(|error| Error::io("read", path, error))?
            .len();
        if current < length {
            return Err(Error::data(
                path,
                format!(
                    "the event file has {current} bytes, the checkpoint recorded {length}; \
                     it was changed after the checkpoint"
                ),
            ));
        }
        file.set_len(length)
            .map_err(|error| Error::io("truncate", path, error))?;
        let mut file = file;
        std::io::Seek::seek(&mut file, std::io::SeekFrom::End(0))
            .map_err(|error| Error::io("seek", path, error))?;
        Ok(Self {
            path: path.to_path_buf(),
            records: RecordWriter::new(BufWriter::new(file)),
        })
    }

    /// Flushes buffered records and returns the file's length in bytes.
    pub fn flushed_length(&mut self) -> Result<u64> {
        self.flush()?;
        std::fs::metadata(&self.path)
            .map(|metadata| metadata.len())
            .map_err(|error| Error::io("read", &self.path, error))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends a scalar summary.
    pub fn scalar(&mut self, tag: &str, value: f64, step: i64) -> Result<()> {
        let summary = tensorboard_rs::summary::scalar(tag, value as f32);
        self.write_summary(summary, step)
    }

    /// Appends an RGB image summary, encoded as PNG.
    ///
    /// # Shapes
    ///
    /// `pixels`: interleaved RGB bytes of `[height, width, 3]`.
    pub fn image(
        &mut self,
        tag: &str,
        pixels: Vec<u8>,
        height: u32,
        width: u32,
        step: i64,
    ) -> Result<()> {
        let image = image::RgbImage::from_raw(width, height, pixels).ok_or_else(|| {
            Error::data(
                &self.path,
                format!("image `{tag}` has fewer bytes than {height}x{width}x3"),
            )
        })?;
        let mut png = Vec::new();
        image
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .map_err(|error| {
                Error::data(&self.path, format!("cannot encode image `{tag}`: {error}"))
            })?;
        let mut encoded = Summary_Image::new();
        encoded.set_height(height as i32);
        encoded.set_width(width as i32);
        encoded.set_colorspace(3);
        encoded.set_encoded_image_string(png);
        let mut value = Summary_Value::new();
        value.set_tag(tag.into());
        value.set_image(encoded);
        let mut summary = Summary::new();
        summary.set_value(RepeatedField::from_vec(vec![value]));
        self.write_summary(summary, step)
    }

    /// Appends a prepared summary, such as the hparams plugin's records.
    pub fn summary(&mut self, summary: Summary, step: i64) -> Result<()> {
        self.write_summary(summary, step)
    }

    /// Flushes buffered records to the file.
    pub fn flush(&mut self) -> Result<()> {
        self.records
            .flush()
            .map_err(|error| Error::io("write", &self.path, error))
    }

    fn write_summary(&mut self, summary: Summary, step: i64) -> Result<()> {
        let mut event = Event::new();
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        event.set_wall_time(now.as_secs_f64());
        event.set_step(step);
        event.set_summary(summary);
        self.write_event(event)
    }

    fn write_event(&mut self, event: Event) -> Result<()> {
        let bytes = event
            .write_to_bytes()
            .map_err(|error| Error::data(&self.path, format!("cannot encode event: {error}")))?;
        self.records
            .write(&bytes)
            .map_err(|error| Error::io("write", &self.path, error))
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        if let Err(error) = self.flush() {
            tracing::warn!(%error, "event file not flushed");
        }
    }
}

/// Event files directly in `dir`, not in its subfolders.
pub fn event_files(dir: &Path) -> Result<impl Iterator<Item = PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|error| Error::io("read", dir, error))?;
    Ok(entries.flatten().map(|entry| entry.path()).filter(|path| {
        path.is_file()
            && path
                .file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with("events.out.tfevents."))
    }))
}

/// Removes the event files directly in `dir` but `keep`, so that an attempt that starts a
/// stage again does not leave the steps of an earlier attempt beside its own.
pub fn remove_event_files(dir: &Path, keep: Option<&Path>) -> Result<()> {
    for path in event_files(dir)? {
        if keep.is_some_and(|keep| keep == path) {
            continue;
        }
        std::fs::remove_file(&path).map_err(|error| Error::io("remove", &path, error))?;
    }
    Ok(())
}

fn hostname() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: the buffer is valid for its whole length and gethostname writes at most that
    // many bytes. The result is read only up to the first NUL.
    let status = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    if status != 0 {
        return "localhost".into();
    }
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    String::from_utf8_lossy(&buffer[..end]).into_owned()
}
