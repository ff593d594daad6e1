//! The migrations are embedded into the binary (`db::migrate`); a new migration folder must
//! rebuild it, which cargo does not know on its own.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
