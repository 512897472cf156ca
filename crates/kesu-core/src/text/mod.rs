//! Text handling shared by the flagger and the API: normalisation for
//! matching (with offsets back to the original) and word segmentation.
pub mod normalize;
pub mod pii;
pub mod segment;

pub use normalize::{char_slice, Normalized};
pub use segment::{Segment, Segmenter};
