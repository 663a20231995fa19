//! MNIST in the IDX format, gzip-compressed (`*.gz`) or raw: `train-*` files for split
//! `train`, `t10k-*` files for split `test`.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::{choose_subset, image_set_from_bytes, ImageSet, ReadRequest};
use crate::error::{Error, Result};

/// IDX magic number of an unsigned-byte tensor of rank 3 (images).
const IMAGES_MAGIC: u32 = 0x0000_0803;
/// IDX magic number of an unsigned-byte tensor of rank 1 (labels).
const LABELS_MAGIC: u32 = 0x0000_0801;

/// Reads split `train` or `test` from `root`.
pub fn read_mnist(request: &ReadRequest, split: &str, limit: usize) -> Result<ImageSet> {
    let prefix = match split {
        "train" => "train",
        "test" | "t10k" => "t10k",
        other => {
            return Err(Error::data(
                request.root,
                format!("unknown MNIST split `{other}`; expected `train` or `test`"),
            ))
        }
    };
    let images_path = find_file(request.root, &format!("{prefix}-images-idx3-ubyte"))?;
    let labels_path = find_file(request.root, &format!("{prefix}-labels-idx1-ubyte"))?;

    let image_file = read_maybe_gzip(&images_path)?;
    let label_file = read_maybe_gzip(&labels_path)?;
    let (dims, pixels) = parse_idx(&images_path, &image_file, IMAGES_MAGIC)?;
    let (label_dims, labels) = parse_idx(&labels_path, &label_file, LABELS_MAGIC)?;
    if dims[0] != label_dims[0] {
        return Err(Error::data(
            &labels_path,
            format!(
                "{} labels for {} images in {}",
                label_dims[0],
                dims[0],
                images_path.display()
            ),
        ));
    }
    if let Some(bad) = labels.iter().position(|&label| label > 9) {
        return Err(Error::data(
            &labels_path,
            format!("label {} at index {bad}, expected 0 to 9", labels[bad]),
        ));
    }

    let (height, width) = (dims[1], dims[2]);
    let image_bytes = height * width;
    let chosen = choose_subset(dims[0], limit, request.seed);
    let mut kept_pixels = Vec::with_capacity(chosen.len() * image_bytes);
    let mut kept_labels = Vec::with_capacity(chosen.len());
    for i in chosen {
        kept_pixels.extend_from_slice(&pixels[i * image_bytes..(i + 1) * image_bytes]);
        kept_labels.push(labels[i] as i64);
    }
    let classes = (0..10).map(|digit| digit.to_string()).collect();
    Ok(image_set_from_bytes(
        kept_pixels,
        kept_labels,
        [1, height as i64, width as i64],
        classes,
    ))
}

fn find_file(root: &Path, stem: &str) -> Result<PathBuf> {
    for name in [format!("{stem}.gz"), stem.to_string()] {
        let path = root.join(&name);
        if path.is_file() {
            return Ok(path);
        }
    }
    Err(Error::data(
        root.join(format!("{stem}.gz")),
        format!("MNIST file `{stem}` not found (with or without .gz)"),
    ))
}

fn read_maybe_gzip(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|error| Error::io("read", path, error))?;
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return Ok(raw);
    }
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(raw.as_slice())
        .read_to_end(&mut bytes)
        .map_err(|error| {
            Error::data(
                path,
                format!("cannot decompress: {error}; the file is truncated or corrupt"),
            )
        })?;
    Ok(bytes)
}

/// Parses an IDX file of unsigned bytes: returns its dimensions and its data.
pub fn parse_idx<'a>(path: &Path, bytes: &'a [u8], magic: u32) -> Result<(Vec<usize>, &'a [u8])> {
    let header_magic = bytes
        .get(0..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    if header_magic != Some(magic) {
        return Err(Error::data(
            path,
            format!("not an IDX file of the expected type (magic {header_magic:08x?}, expected {magic:08x})"),
        ));
    }
    let rank = (magic & 0xff) as usize;
    let header_len = 4 + 4 * rank;
    let Some(header) = bytes.get(4..header_len) else {
        return Err(Error::data(path, "IDX header is truncated"));
    };
    let dims: Vec<usize> = header
        .chunks(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |product, &dim| product.checked_mul(dim))
        .ok_or_else(|| Error::data(path, format!("IDX dimensions {dims:?} are too large")))?;
    if dims.contains(&0) {
        return Err(Error::data(
            path,
            format!("IDX file is empty (dimensions {dims:?})"),
        ));
    }
    let data = &bytes[header_len..];
    if data.len() != expected {
        return Err(Error::data(
            path,
            format!(
                "IDX data is {} bytes but the header {dims:?} needs {expected}; the file is \
                 truncated or corrupt. Download it again",
                data.len()
            ),
        ));
    }
    Ok((dims, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut bytes = (0x0800u32 + dims.len() as u32).to_be_bytes().to_vec();
        for dim in dims {
            bytes.extend(dim.to_be_bytes());
        }
        bytes.extend_from_slice(data);
        bytes
    }

    #[test]
    fn parse_idx_reads_dims() {
        let bytes = idx(&[2, 2, 3], &[7; 12]);
        let (dims, data) = parse_idx(Path::new("a"), &bytes, IMAGES_MAGIC).unwrap();
        assert_eq!(dims, vec![2, 2, 3]);
        assert_eq!(data.len(), 12);
    }

    #[test]
    fn parse_idx_rejects_truncated_data() {
        let bytes = idx(&[2, 2, 3], &[7; 11]);
        let error = parse_idx(Path::new("a"), &bytes, IMAGES_MAGIC)
            .unwrap_err()
            .to_string();
        assert!(error.contains("truncated"), "{error}");
    }

    #[test]
    fn parse_idx_rejects_wrong_magic() {
        let bytes = idx(&[2], &[1, 2]);
        let error = parse_idx(Path::new("a"), &bytes, IMAGES_MAGIC)
            .unwrap_err()
            .to_string();
        assert!(error.contains("magic"), "{error}");
    }
}
