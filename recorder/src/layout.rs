//! Where each picture goes on the recording's canvas: pure, tested without GStreamer.
//!
//! A grid that reflows as publishers come and go: one picture fills the canvas, two sit side
//! by side, up to four in 2x2, then 3 columns, and so on; each cell keeps 16:9 inside the canvas
//! (the compositor keeps each picture's own aspect ratio inside its cell). One picture may be
//! shown large (a shared screen, or the active speaker among three or more people; the caller
//! picks it): it takes the canvas's left three quarters and the others stack in a column on the
//! right.

/// A rectangle on the canvas, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x: i32,
    pub y: i32,
    pub width: i32,
    pub height: i32,
}

/// The cells for `n` pictures on a `width` x `height` canvas, in order; `screen` is the index of
/// a picture shown large (a shared screen), if any.
pub fn cells(n: usize, width: i32, height: i32, screen: Option<usize>) -> Vec<Rect> {
    if n == 0 {
        return Vec::new();
    }
    if let Some(s) = screen.filter(|s| *s < n)
        && n > 1
    {
        let main_w = width * 3 / 4;
        let side_w = width - main_w;
        let others = (n - 1) as i32;
        let side_h = height / others;
        let mut out = Vec::with_capacity(n);
        let mut row = 0;
        for i in 0..n {
            if i == s {
                out.push(Rect {
                    x: 0,
                    y: 0,
                    width: main_w,
                    height,
                });
            } else {
                out.push(Rect {
                    x: main_w,
                    y: row * side_h,
                    width: side_w,
                    height: side_h,
                });
                row += 1;
            }
        }
        return out;
    }
    let columns = (n as f64).sqrt().ceil() as i32;
    let rows = (n as i32 + columns - 1) / columns;
    let cell_w = width / columns;
    let cell_h = height / rows;
    (0..n as i32)
        .map(|i| {
            let (r, c) = (i / columns, i % columns);
            // A last row that is not full is centred.
            let in_row = if r == rows - 1 {
                n as i32 - r * columns
            } else {
                columns
            };
            let offset = if in_row < columns {
                (width - in_row * cell_w) / 2
            } else {
                0
            };
            Rect {
                x: offset + c * cell_w,
                y: r * cell_h,
                width: cell_w,
                height: cell_h,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(x: i32, y: i32, width: i32, height: i32) -> Rect {
        Rect {
            x,
            y,
            width,
            height,
        }
    }

    #[test]
    fn the_grid_reflows_with_the_number_of_pictures() {
        assert_eq!(cells(0, 1280, 720, None), vec![]);
        assert_eq!(cells(1, 1280, 720, None), vec![r(0, 0, 1280, 720)]);
        // Two: side by side, each picture centred in its half (the compositor keeps 16:9).
        assert_eq!(
            cells(2, 1280, 720, None),
            vec![r(0, 0, 640, 720), r(640, 0, 640, 720)]
        );
        // Three: two on top, one centred below.
        assert_eq!(
            cells(3, 1280, 720, None),
            vec![
                r(0, 0, 640, 360),
                r(640, 0, 640, 360),
                r(320, 360, 640, 360)
            ]
        );
        assert_eq!(cells(4, 1280, 720, None)[3], r(640, 360, 640, 360));
        // Five: three columns.
        let five = cells(5, 1280, 720, None);
        assert_eq!(five[0], r(0, 0, 426, 360));
        assert_eq!(five[3].y, 360);
        // Nothing leaves the canvas.
        for n in 1..=16 {
            for c in cells(n, 1280, 720, None) {
                assert!(c.x >= 0 && c.y >= 0 && c.x + c.width <= 1280 && c.y + c.height <= 720);
            }
        }
    }

    #[test]
    fn a_shared_screen_takes_most_of_the_canvas() {
        assert_eq!(
            cells(3, 1280, 720, Some(1)),
            vec![
                r(960, 0, 320, 360),
                r(0, 0, 960, 720),
                r(960, 360, 320, 360)
            ]
        );
        // Alone, it is the whole canvas like any picture.
        assert_eq!(cells(1, 1280, 720, Some(0)), vec![r(0, 0, 1280, 720)]);
    }
}
