use super::*;

#[test]
fn sizes_have_their_widths_and_masks() {
    for (bytes, size, mask) in [
        (1, AccessSize::Byte, 0xff),
        (2, AccessSize::Word, 0xffff),
        (4, AccessSize::Dword, 0xffff_ffff),
        (8, AccessSize::Qword, u64::MAX),
    ] {
        assert_eq!(AccessSize::from_bytes(bytes), Some(size));
        assert_eq!((size.bytes() as u64, size.mask()), (bytes, mask));
    }
    for bytes in [0, 3, 5, 16, u64::MAX] {
        assert_eq!(AccessSize::from_bytes(bytes), None);
    }
}

#[test]
fn sign_extension_copies_the_top_bit() {
    assert_eq!(AccessSize::Byte.sign_extend(0x80), 0xffff_ffff_ffff_ff80);
    assert_eq!(AccessSize::Byte.sign_extend(0x7f), 0x7f);
    assert_eq!(AccessSize::Word.sign_extend(0x8000), 0xffff_ffff_ffff_8000);
    assert_eq!(AccessSize::Dword.sign_extend(0xffff_fffe), u64::MAX - 1);
    assert_eq!(AccessSize::Qword.sign_extend(0x8000_0000_0000_0000), 0x8000_0000_0000_0000);
}
