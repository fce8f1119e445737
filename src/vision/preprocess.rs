//! TODO (vision branch): canonical preprocessing.
pub const INPUT_SIZE: usize = 224;
pub const INPUT_LEN: usize = 3 * INPUT_SIZE * INPUT_SIZE;
