//! Image-folder data sets: `root/<split>/<class>/*.{jpg,jpeg,png}`, decoded in parallel.

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::{choose_subset, image_set_from_bytes, ImageSet, ReadRequest};
use crate::error::{Error, Result};

/// Class folder names of CIFAR-10, in the order of the official label indices.
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

const EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

/// Reads any image-folder tree. Classes are the sub-folders of the split, sorted by name.
pub fn read_image_folder(request: &ReadRequest, split: &str, limit: usize) -> Result<ImageSet> {
    let split_dir = request.root.join(split);
    let classes = class_folders(&split_dir)?;
    let size = (request.spec.image_size > 0).then_some(request.spec.image_size);
    read_classes(request, &split_dir, classes, size, limit)
}

/// Reads CIFAR-10 stored as an image-folder tree of 32x32 images, with the official class
/// order as labels.
pub fn read_cifar10_folder(request: &ReadRequest, split: &str, limit: usize) -> Result<ImageSet> {
    let split_dir = request.root.join(split);
    let found = class_folders(&split_dir)?;
    let mut expected: Vec<String> = CIFAR10_CLASSES.iter().map(|c| c.to_string()).collect();
    expected.sort();
    if found != expected {
        return Err(Error::data(
            &split_dir,
            format!(
                "expected the 10 CIFAR-10 class folders ({}), found [{}]; \
                 use `data.kind = \"image_folder\"` for other trees",
                CIFAR10_CLASSES.join(", "),
                found.join(", ")
            ),
        ));
    }
    let classes = CIFAR10_CLASSES.iter().map(|c| c.to_string()).collect();
    let set = read_classes(request, &split_dir, classes, None, limit)?;
    if set.image_shape() != [3, 32, 32] {
        return Err(Error::data(
            &split_dir,
            format!(
                "expected 32x32 RGB images, found shape {:?}",
                set.image_shape()
            ),
        ));
    }
    Ok(set)
}

fn class_folders(split_dir: &Path) -> Result<Vec<String>> {
    let entries = std::fs::read_dir(split_dir).map_err(|error| {
        Error::data(
            split_dir,
            format!("cannot list split folder: {error}; check `data.root` and the split names"),
        )
    })?;
    let mut classes = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| Error::io("list", split_dir, error))?;
        if entry.path().is_dir() {
            classes.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    classes.sort();
    if classes.is_empty() {
        return Err(Error::data(split_dir, "no class folders found"));
    }
    Ok(classes)
}

/// Lists the images of each class, takes a seeded subset of `limit` and decodes it.
fn read_classes(
    request: &ReadRequest,
    split_dir: &Path,
    classes: Vec<String>,
    size: Option<u32>,
    limit: usize,
) -> Result<ImageSet> {
    let mut files: Vec<(PathBuf, i64)> = Vec::new();
    for (label, class) in classes.iter().enumerate() {
        let class_dir = split_dir.join(class);
        let mut class_files = Vec::new();
        for entry in walkdir::WalkDir::new(&class_dir).min_depth(1).max_depth(1) {
            let entry = entry.map_err(|error| {
                Error::data(&class_dir, format!("cannot list class folder: {error}"))
            })?;
            if entry.file_type().is_file() && has_image_extension(entry.path()) {
                class_files.push(entry.into_path());
            }
        }
        class_files.sort();
        files.extend(class_files.into_iter().map(|path| (path, label as i64)));
    }
    if files.is_empty() {
        return Err(Error::data(
            split_dir,
            format!("no image files ({}) found", EXTENSIONS.join(", ")),
        ));
    }
    let chosen = choose_subset(files.len(), limit, request.seed);
    let files: Vec<(PathBuf, i64)> = chosen.into_iter().map(|i| files[i].clone()).collect();

    let decode = || {
        files
            .par_iter()
            .map(|(path, _)| decode_image(path, size))
            .collect::<Vec<_>>()
    };
    let decoded = match request.spec.decode_threads {
        0 => decode(),
        threads => rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|error| {
                Error::data(split_dir, format!("cannot start decoder threads: {error}"))
            })?
            .install(decode),
    };

    let mut shape: Option<(u32, u32)> = None;
    let mut pixels = Vec::new();
    for ((path, _), image) in files.iter().zip(decoded) {
        let image = image?;
        let dims = image.dimensions();
        match shape {
            None => shape = Some(dims),
            Some(first) if first != dims => {
                return Err(Error::data(
                    path,
                    format!(
                        "image is {}x{} but earlier images are {}x{}; \
                         with `data.kind = \"image_folder\"`, set `data.image_size` to \
                         resize all images",
                        dims.0, dims.1, first.0, first.1
                    ),
                ));
            }
            Some(_) => {}
        }
        append_chw(&mut pixels, &image);
    }
    let (width, height) = shape.unwrap_or((0, 0));
    let labels = files.iter().map(|(_, label)| *label).collect();
    Ok(image_set_from_bytes(
        pixels,
        labels,
        [3, height as i64, width as i64],
        classes,
    ))
}

fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|ext| ext.to_str())
        .is_some_and(|ext| EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str()))
}

fn decode_image(path: &Path, size: Option<u32>) -> Result<image::RgbImage> {
    let image = image::open(path).map_err(|error| {
        Error::data(
            path,
            format!("cannot decode image: {error}; replace or remove the file"),
        )
    })?;
    let image = match size {
        Some(side) => image.resize_exact(side, side, image::imageops::FilterType::Triangle),
        None => image,
    };
    Ok(image.into_rgb8())
}

/// Appends an interleaved RGB image as planar `[3, H, W]` bytes.
fn append_chw(pixels: &mut Vec<u8>, image: &image::RgbImage) {
    let raw = image.as_raw();
    for channel in 0..3 {
        pixels.extend(raw.iter().skip(channel).step_by(3));
    }
}
