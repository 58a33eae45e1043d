//! wanda
