//! CIFAR-10 in the official binary format (`cifar-10-batches-bin`): records of one label
//! byte followed by 3,072 pixel bytes (1,024 red, then green, then blue, row-major 32x32).

use std::path::{Path, PathBuf};

use super::folder::CIFAR10_CLASSES;
use super::{choose_subset, image_set_from_bytes, ImageSet, ReadRequest};
use crate::error::{Error, Result};

const RECORD_BYTES: usize = 1 + 3 * 32 * 32;

/// Reads split `train` (`data_batch_1.bin` to `data_batch_5.bin`) or `test`
/// (`test_batch.bin`). `root` may be the `cifar-10-batches-bin` folder or its parent.
pub fn read_cifar10_bin(request: &ReadRequest, split: &str, limit: usize) -> Result<ImageSet> {
    let folder = batches_folder(request.root);
    let files: Vec<PathBuf> = match split {
        "train" => (1..=5)
            .map(|i| folder.join(format!("data_batch_{i}.bin")))
            .collect(),
        "test" => vec![folder.join("test_batch.bin")],
        other => {
            return Err(Error::data(
                &folder,
                format!("unknown CIFAR-10 split `{other}`; expected `train` or `test`"),
            ))
        }
    };
    let mut bytes = Vec::new();
    for file in &files {
        let content = std::fs::read(file)
            .map_err(|error| Error::data(file, format!("cannot read CIFAR-10 batch: {error}")))?;
        bytes.extend(parse_records(file, &content)?);
    }
    let count = bytes.len() / RECORD_BYTES;
    let chosen = choose_subset(count, limit, request.seed);
    let mut pixels = Vec::with_capacity(chosen.len() * (RECORD_BYTES - 1));
    let mut labels = Vec::with_capacity(chosen.len());
    for i in chosen {
        let record = &bytes[i * RECORD_BYTES..(i + 1) * RECORD_BYTES];
        labels.push(record[0] as i64);
        pixels.extend_from_slice(&record[1..]);
    }
    let classes = CIFAR10_CLASSES.iter().map(|c| c.to_string()).collect();
    Ok(image_set_from_bytes(pixels, labels, [3, 32, 32], classes))
}

fn batches_folder(root: &Path) -> PathBuf {
    let nested = root.join("cifar-10-batches-bin");
    if nested.is_dir() {
        nested
    } else {
        root.to_path_buf()
    }
}

/// Checks that `content` is whole records with labels 0 to 9 and returns it.
pub fn parse_records<'a>(file: &Path, content: &'a [u8]) -> Result<&'a [u8]> {
    if content.is_empty() || !content.len().is_multiple_of(RECORD_BYTES) {
        return Err(Error::data(
            file,
            format!(
                "file is {} bytes, not a whole number of {RECORD_BYTES}-byte records; \
                 it is truncated or not a CIFAR-10 batch. Download and extract \
                 cifar-10-binary.tar.gz again",
                content.len()
            ),
        ));
    }
    for (index, record) in content.chunks(RECORD_BYTES).enumerate() {
        if record[0] > 9 {
            return Err(Error::data(
                file,
                format!("record {index} has label {}, expected 0 to 9", record[0]),
            ));
        }
    }
    Ok(content)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_records_accepts_whole_records() {
        let mut content = vec![3u8; RECORD_BYTES * 2];
        content[RECORD_BYTES] = 9;
        assert_eq!(
            parse_records(Path::new("x.bin"), &content).unwrap().len(),
            2 * RECORD_BYTES
        );
    }

    #[test]
    fn parse_records_rejects_truncated_file() {
        let content = vec![0u8; RECORD_BYTES + 100];
        let error = parse_records(Path::new("x.bin"), &content)
            .unwrap_err()
            .to_string();
        assert!(error.contains("truncated"), "{error}");
        assert!(error.contains("x.bin"), "{error}");
    }

    #[test]
    fn parse_records_rejects_bad_label() {
        let mut content = vec![0u8; RECORD_BYTES];
        content[0] = 10;
        let error = parse_records(Path::new("x.bin"), &content)
            .unwrap_err()
            .to_string();
        assert!(error.contains("label 10"), "{error}");
    }
}
