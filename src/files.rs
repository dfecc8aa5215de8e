//! Files an operator or editor names (records, images, CSV, keys): opened without
//! blocking, refused unless regular, read within a size limit; images checked.

use crate::store::ImageData;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Largest image accepted in a record.
pub const MAX_IMAGE_BYTES: usize = 10 * 1024 * 1024;

/// Why [`read_regular_file`] refused a file.
#[derive(Debug)]
pub enum ReadFileError {
    /// Opening or reading failed.
    Io(std::io::Error),
    /// A FIFO, device, socket or folder: never read.
    NotRegular(&'static str),
    /// Larger than the limit (the size found so far, at least `limit + 1`).
    TooLarge { size: u64, limit: usize },
}

impl std::fmt::Display for ReadFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(e) => write!(f, "cannot read: {e}"),
            Self::NotRegular(kind) => write!(
                f,
                "is {kind}, not a regular file: refused without reading it"
            ),
            Self::TooLarge { size, limit } => {
                write!(f, "file is {size} bytes; the limit is {limit}")
            }
        }
    }
}

/// Opens a file given by an operator, safely: without blocking (a FIFO with no writer
/// would hang a plain open), and refused unless what was opened is a regular file (a
/// FIFO or a device such as /dev/zero, even behind a symlink, is never read).
pub fn open_regular_file(path: &Path) -> Result<(std::fs::File, u64), ReadFileError> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    }
    let file = options.open(path).map_err(ReadFileError::Io)?;
    // The type of what was opened (fstat), not of what the path named a moment before.
    let meta = file.metadata().map_err(ReadFileError::Io)?;
    let ft = meta.file_type();
    if !ft.is_file() {
        #[cfg(unix)]
        use std::os::unix::fs::FileTypeExt;
        let kind = if ft.is_dir() {
            "a folder"
        } else {
            #[cfg(unix)]
            {
                if ft.is_fifo() {
                    "a FIFO (named pipe)"
                } else if ft.is_char_device() || ft.is_block_device() {
                    "a device"
                } else if ft.is_socket() {
                    "a socket"
                } else {
                    "not a regular file"
                }
            }
            #[cfg(not(unix))]
            {
                "not a regular file"
            }
        };
        return Err(ReadFileError::NotRegular(kind));
    }
    Ok((file, meta.len()))
}

/// Reads a file given by an editor, safely: opened as [`open_regular_file`] does, its
/// size checked before reading, and at most `limit + 1` bytes read whatever the size said.
pub fn read_regular_file(path: &Path, limit: usize) -> Result<Vec<u8>, ReadFileError> {
    use std::io::Read;
    let (file, len) = open_regular_file(path)?;
    if len > limit as u64 {
        return Err(ReadFileError::TooLarge { size: len, limit });
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadFileError::Io)?;
    if bytes.len() > limit {
        return Err(ReadFileError::TooLarge {
            size: bytes.len() as u64,
            limit,
        });
    }
    Ok(bytes)
}

impl std::error::Error for ReadFileError {}

/// Why a record's image (or the WeChat cover) was refused; names the file.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{} is {size} bytes; the limit is {limit}", path.display())]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: usize,
    },
    #[error("cannot read {}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} {kind}", path.display())]
    Refused { path: PathBuf, kind: ReadFileError },
    #[error("{} is not a PNG, JPEG or GIF image", path.display())]
    NotAnImage { path: PathBuf },
    #[error("{}: cannot read image size: {source}", path.display())]
    NoSize {
        path: PathBuf,
        source: imagesize::ImageError,
    },
}

/// Reads an image, checks its size and type, and returns its bytes and facts.
pub(crate) fn load_image(path: &Path) -> Result<ImageData, ImageError> {
    let path_buf = || path.to_path_buf();
    let bytes = read_regular_file(path, MAX_IMAGE_BYTES).map_err(|e| match e {
        ReadFileError::TooLarge { size, limit } => ImageError::TooLarge {
            path: path_buf(),
            size,
            limit,
        },
        ReadFileError::Io(source) => ImageError::Unreadable {
            path: path_buf(),
            source,
        },
        kind => ImageError::Refused {
            path: path_buf(),
            kind,
        },
    })?;
    let content_type = match imagesize::image_type(&bytes) {
        Ok(imagesize::ImageType::Png) => "image/png",
        Ok(imagesize::ImageType::Jpeg) => "image/jpeg",
        Ok(imagesize::ImageType::Gif) => "image/gif",
        _ => return Err(ImageError::NotAnImage { path: path_buf() }),
    };
    let size = imagesize::blob_size(&bytes).map_err(|source| ImageError::NoSize {
        path: path_buf(),
        source,
    })?;
    Ok(ImageData {
        file: path.display().to_string(),
        content_type: content_type.to_string(),
        sha256: hex::encode(Sha256::digest(&bytes)),
        width: size.width as u32,
        height: size.height as u32,
        bytes,
    })
}
