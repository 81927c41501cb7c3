//! How the stage lays out its tiles: pure rules, tested natively.
//!
//! Two layouts, as meeting products have them. The *grid* gives every tile the same size.
//! *Speaker view* shows one tile large (the one the person pinned, else a shared screen, else
//! whoever speaks now) and the others in a strip below it. Until the person picks one, the
//! layout follows the room: speaker view while a screen is shared or a tile is pinned, the grid
//! otherwise. Each tile asks the server for the simulcast layer its size needs, so the large
//! tile gets the sharp picture and the strip the small ones.

/// A layout of the stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Grid,
    Speaker,
}

impl Layout {
    pub fn name(self) -> &'static str {
        match self {
            Layout::Grid => "grid",
            Layout::Speaker => "speaker",
        }
    }
}

/// A tile of the stage: a person's camera, or a shared screen.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TileKey {
    /// A participant's camera tile (participant id).
    Person(String),
    /// A shared screen (its video track's id).
    Screen(String),
}

/// The layout in effect: the person's choice, else speaker view while a screen is shared or a
/// tile is pinned, else the grid.
pub fn effective(choice: Option<Layout>, screens: usize, pinned: bool) -> Layout {
    match choice {
        Some(l) => l,
        None if screens > 0 || pinned => Layout::Speaker,
        None => Layout::Grid,
    }
}

/// The tile shown large in `layout`, if any: the pinned tile, else the newest shared screen,
/// else the active speaker's tile, else the first tile. Only tiles on the stage qualify.
pub fn main_tile(
    layout: Layout,
    tiles: &[TileKey],
    pinned: Option<&TileKey>,
    speaker: Option<&str>,
) -> Option<TileKey> {
    if layout == Layout::Grid {
        return None;
    }
    if let Some(p) = pinned.filter(|p| tiles.contains(p)) {
        return Some(p.clone());
    }
    if let Some(screen) = tiles.iter().rev().find(|t| matches!(t, TileKey::Screen(_))) {
        return Some(screen.clone());
    }
    if let Some(s) = speaker {
        let key = TileKey::Person(s.to_owned());
        if tiles.contains(&key) {
            return Some(key);
        }
    }
    tiles.first().cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(p: &str) -> TileKey {
        TileKey::Person(p.into())
    }

    fn screen(t: &str) -> TileKey {
        TileKey::Screen(t.into())
    }

    #[test]
    fn the_layout_follows_the_room_until_the_person_picks_one() {
        assert_eq!(effective(None, 0, false), Layout::Grid);
        assert_eq!(effective(None, 1, false), Layout::Speaker);
        assert_eq!(effective(None, 0, true), Layout::Speaker);
        assert_eq!(effective(Some(Layout::Grid), 1, true), Layout::Grid);
        assert_eq!(effective(Some(Layout::Speaker), 0, false), Layout::Speaker);
    }

    #[test]
    fn speaker_view_shows_the_pin_then_a_screen_then_the_speaker_large() {
        let tiles = vec![person("1"), person("2"), screen("s1"), screen("s2")];
        // A pin wins over everything.
        assert_eq!(
            main_tile(Layout::Speaker, &tiles, Some(&person("2")), Some("1")),
            Some(person("2"))
        );
        // Else the newest screen.
        assert_eq!(
            main_tile(Layout::Speaker, &tiles, None, Some("1")),
            Some(screen("s2"))
        );
        // A pin of a tile that went away counts for nothing.
        assert_eq!(
            main_tile(Layout::Speaker, &tiles, Some(&screen("gone")), None),
            Some(screen("s2"))
        );
        // Without a screen: who speaks, else the first tile.
        let people = vec![person("1"), person("2")];
        assert_eq!(
            main_tile(Layout::Speaker, &people, None, Some("2")),
            Some(person("2"))
        );
        assert_eq!(
            main_tile(Layout::Speaker, &people, None, Some("9")),
            Some(person("1"))
        );
        assert_eq!(main_tile(Layout::Speaker, &[], None, Some("1")), None);
    }

    #[test]
    fn the_grid_has_no_large_tile() {
        let tiles = vec![person("1"), screen("s")];
        assert_eq!(
            main_tile(Layout::Grid, &tiles, Some(&person("1")), Some("1")),
            None
        );
    }
}
