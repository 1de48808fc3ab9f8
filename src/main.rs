fn main() {
    println!("outsftphook");
}
