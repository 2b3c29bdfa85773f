//! The QR code of an `otpauth://` URI: in the terminal with Unicode half
//! blocks (two modules per character cell), as SVG, or as PNG.

use qrcode::render::{svg, unicode::Dense1x2};
use qrcode::types::QrError;
use qrcode::{Color, QrCode};

use crate::error::{CliError, Result};

/// Pixels per module in the PNG.
const PNG_SCALE: usize = 8;
/// Modules of quiet zone around the code (what the standard asks).
const QUIET: usize = 4;

fn encode(text: &str) -> Result<QrCode> {
    QrCode::new(text.as_bytes()).map_err(CliError::Qr)
}

/// Which way round the terminal draws: a block character shows the
/// foreground colour, so on a dark background the light modules must be
/// blocks, and on a light background the dark ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Background {
    Dark,
    Light,
}

impl Background {
    /// The terminal's background as far as the environment tells
    /// (`COLORFGBG="15;0"` = light text on dark), dark when unknown: most
    /// terminals are. `invert` flips the guess.
    pub fn guess(colorfgbg: Option<&str>, invert: bool) -> Background {
        let light = colorfgbg
            .and_then(|v| v.rsplit(';').next())
            .and_then(|bg| bg.trim().parse::<u8>().ok())
            // 7 (white) and 9-15 (bright) backgrounds are light; 8 is grey.
            .is_some_and(|bg| bg == 7 || bg >= 9);
        match (light, invert) {
            (false, false) | (true, true) => Background::Dark,
            _ => Background::Light,
        }
    }
}

/// The code as lines of half-block characters, quiet zone included.
pub fn terminal(text: &str, background: Background) -> Result<String> {
    let code = encode(text)?;
    let mut renderer = code.render::<Dense1x2>();
    renderer.quiet_zone(true);
    if background == Background::Dark {
        renderer
            .dark_color(Dense1x2::Light)
            .light_color(Dense1x2::Dark);
    }
    Ok(renderer.build())
}

/// The code as an SVG document, black on white.
pub fn svg(text: &str) -> Result<String> {
    let code = encode(text)?;
    Ok(code
        .render::<svg::Color>()
        .quiet_zone(true)
        .min_dimensions(256, 256)
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .build())
}

/// The code as a PNG file, black on white, 1 bit per pixel. Written by
/// hand (stored deflate blocks) to keep image libraries out of the tree.
pub fn png(text: &str) -> Result<Vec<u8>> {
    let code = encode(text)?;
    let width = code.width();
    let colors = code.to_colors();
    let side = (width + 2 * QUIET) * PNG_SCALE;
    let row_bytes = side.div_ceil(8);
    let mut raw = Vec::with_capacity(side * (row_bytes + 1));
    for y in 0..side {
        raw.push(0); // filter: none
        let my = (y / PNG_SCALE).wrapping_sub(QUIET);
        let mut row = vec![0xffu8; row_bytes]; // 1 = white
        for x in 0..side {
            let mx = (x / PNG_SCALE).wrapping_sub(QUIET);
            let dark = mx < width && my < width && colors[my * width + mx] == Color::Dark;
            if dark {
                row[x / 8] &= !(0x80 >> (x % 8));
            }
        }
        raw.extend_from_slice(&row);
    }
    let side = u32::try_from(side).map_err(|_| CliError::Qr(QrError::DataTooLong))?;
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&[1, 0, 0, 0, 0]); // 1-bit greyscale
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &zlib_stored(&raw));
    chunk(&mut out, b"IEND", &[]);
    Ok(out)
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// A zlib stream of uncompressed deflate blocks.
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let mut blocks = data.chunks(65_535).peekable();
    if blocks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(block) = blocks.next() {
        out.push(u8::from(blocks.peek().is_none()));
        let len = block.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    out.extend_from_slice(&adler32(data).to_be_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &x in data {
        a = (a + u32::from(x)) % 65_521;
        b = (b + a) % 65_521;
    }
    (b << 16) | a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn background_guess_follows_colorfgbg_and_invert() {
        assert_eq!(Background::guess(None, false), Background::Dark);
        assert_eq!(Background::guess(None, true), Background::Light);
        assert_eq!(Background::guess(Some("15;0"), false), Background::Dark);
        assert_eq!(Background::guess(Some("0;15"), false), Background::Light);
        assert_eq!(
            Background::guess(Some("0;default;15"), true),
            Background::Dark
        );
        assert_eq!(Background::guess(Some("garbage"), false), Background::Dark);
    }

    #[test]
    fn terminal_code_has_a_quiet_zone_of_the_background_colour() {
        let text = terminal("otpauth://totp/x?secret=GEZDGNBV", Background::Dark).unwrap();
        let first = text.lines().next().unwrap();
        // On a dark terminal light modules are drawn: the margin is solid.
        assert!(first.chars().all(|c| c == '█'), "{first:?}");
        let light = terminal("otpauth://totp/x?secret=GEZDGNBV", Background::Light).unwrap();
        assert!(light.lines().next().unwrap().chars().all(|c| c == ' '));
    }

    #[test]
    fn checksums_match_known_values() {
        assert_eq!(crc32(b"IEND"), 0xae42_6082);
        assert_eq!(adler32(b"Wikipedia"), 0x11e6_0398);
    }

    #[test]
    fn png_has_signature_header_and_end() {
        let bytes = png("otpauth://totp/x?secret=GEZDGNBV").unwrap();
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR"));
        assert!(bytes.ends_with(b"IEND\xae\x42\x60\x82"));
    }
}
