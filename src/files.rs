//! Reading files an operator or editor names (record images, key files, CSV), safely:
//! never blocking on a FIFO, never reading a device, and never more than a limit.

use std::path::Path;

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
