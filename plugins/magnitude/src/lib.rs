//! magnitude
