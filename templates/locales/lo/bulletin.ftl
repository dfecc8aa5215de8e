# ປ້າຍຂໍ້ຄວາມຂອງຈົດໝາຍຂ່າວ, ແຈ້ງການ ແລະ ບົດຄວາມ WeChat: ພາສາລາວ

## Record sections
organizers = ຜູ້ຈັດ
sponsors = ອຸປະຖຳໂດຍ
supporters = ສະໜັບສະໜູນໂດຍ
co-organizers = ຮ່ວມຈັດໂດຍ
attendees = ຜູ້ເຂົ້າຮ່ວມ
topics = ຫົວຂໍ້
highlights = ຈຸດເດັ່ນຈາກທັດສະນະຂອງຜູ້ຊ່ຽວຊານ
image = ຮູບພາບ

## Session formats
format-online = ອອນລາຍ
format-in-person = ພົບປະໂດຍກົງ
format-hybrid = ແບບປະສົມ (ພົບປະໂດຍກົງ ແລະ ອອນລາຍ)

## Digest subject
digest-subject = { $publisher }: ບົດລາຍງານກອງປະຊຸມ { $count } ສະບັບ

## Contact block
contact = ຕິດຕໍ່ພວກເຮົາ
address = ທີ່ຢູ່
tel = ໂທລະສັບ
fax = ແຟັກ
email = ອີເມວ
web = ເວັບໄຊ
wechat = ໄອດີ WeChat

## Footer
why = ທ່ານໄດ້ຮັບຈົດໝາຍຂ່າວສະບັບນີ້ ເນື່ອງຈາກທ່ານຢູ່ໃນລາຍຊື່ຜູ້ຮັບຈົດໝາຍຂອງພວກເຮົາ.
unsubscribe = ຍົກເລີກການຮັບຈົດໝາຍຂ່າວ

## Notices
notice = ແຈ້ງການ
urgent = ດ່ວນ

## The web version and the public archive
view-in-browser = ເບິ່ງໃນບຣາວເຊີ
archive = ຄັງຈົດໝາຍຂ່າວ
archive-languages = ພາສາ
archive-all = ທຸກພາສາ
archive-older = ຈົດໝາຍຂ່າວກ່ອນໜ້ານີ້
archive-newest = ຈົດໝາຍຂ່າວລ່າສຸດ
archive-feed = ຟີດ Atom
archive-empty = ຍັງບໍ່ມີຫຍັງຖືກເຜີຍແຜ່ຢູ່ບ່ອນນີ້ເທື່ອ.
