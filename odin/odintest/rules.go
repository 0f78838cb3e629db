package odintest

import (
	"fmt"
	"math/rand/v2"
	"strings"
)

// Character classes of generated passwords. The symbols are those seen in Odin's
// documented password examples.
const (
	upperLetters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	lowerLetters = "abcdefghijklmnopqrstuvwxyz"
	digits       = "0123456789"
	symbols      = "[]{}()^%$#@!:.-_+*?"
)

// rules are the group's credential rules for new values, as the generators and setters
// apply them.
type rules struct {
	passwordMinLength int
	sipPasswordLength int
	passcodeMinLength int
	passcodeMaxLength int
}

// generatePassword returns n random characters with at least one of each class.
func generatePassword(n int) string {
	classes := []string{upperLetters, lowerLetters, digits, symbols}
	all := upperLetters + lowerLetters + digits + symbols

	b := make([]byte, n)
	for i := range b {
		set := all
		if i < len(classes) {
			set = classes[i]
		}
		b[i] = set[rand.IntN(len(set))]
	}
	rand.Shuffle(len(b), func(i, j int) { b[i], b[j] = b[j], b[i] })
	return string(b)
}

func (r rules) generateWebPassword() string {
	return generatePassword(max(generatedWebPasswordLength, r.passwordMinLength))
}

func (r rules) generateSIPPassword() string {
	return generatePassword(r.sipPasswordLength)
}

// generatePasscode returns random digits, leading zeros included, of a random length
// within the group's range.
func (r rules) generatePasscode() string {
	n := r.passcodeMinLength + rand.IntN(r.passcodeMaxLength-r.passcodeMinLength+1)
	b := make([]byte, n)
	for i := range b {
		b[i] = digits[rand.IntN(len(digits))]
	}
	return string(b)
}

// checkClasses returns why password breaks the length, charset and character class
// rules, or "" when it keeps them.
func checkClasses(password string, minLength int, needDigit, needSymbol bool) string {
	if len(password) < minLength {
		return fmt.Sprintf("must be at least %d characters long", minLength)
	}
	if len(password) > maxPasswordLength {
		return fmt.Sprintf("must be at most %d characters long", maxPasswordLength)
	}

	var upper, lower, digit, symbol bool
	for i := 0; i < len(password); i++ {
		c := password[i]
		switch {
		case c < '!' || c > '~':
			return "must contain only printable ASCII characters without spaces"
		case 'A' <= c && c <= 'Z':
			upper = true
		case 'a' <= c && c <= 'z':
			lower = true
		case '0' <= c && c <= '9':
			digit = true
		default:
			symbol = true
		}
	}
	switch {
	case !upper:
		return "must contain at least 1 uppercase letter"
	case !lower:
		return "must contain at least 1 lowercase letter"
	case needDigit && !digit:
		return "must contain at least 1 digit"
	case needSymbol && !symbol:
		return "must contain at least 1 non-alphanumeric character"
	}
	return ""
}

func containsFold(s, substr string) bool {
	return substr != "" && strings.Contains(strings.ToLower(s), strings.ToLower(substr))
}

// checkWebPassword applies the group password rules: minimum length, the four character
// classes, and not containing the user ID.
func (r rules) checkWebPassword(password, userID string) string {
	if reason := checkClasses(password, r.passwordMinLength, true, true); reason != "" {
		return "[Error 4003] Invalid password: the password " + reason
	}
	if containsFold(password, userID) {
		return "[Error 4003] Invalid password: the password must not contain the user ID"
	}
	return ""
}

// checkSIPPassword applies the SIP authentication password rules quoted in BroadWorks
// documentation: 6 to 60 characters, an uppercase and a lowercase letter, and not
// containing the authentication user name (compared without case).
func (r rules) checkSIPPassword(password, userName string) string {
	if reason := checkClasses(password, minPasswordLength, false, false); reason != "" {
		return "[Error 4003] Invalid authentication password: the password " + reason
	}
	if containsFold(password, userName) {
		return "[Error 4003] Invalid authentication password: the password must not contain the authentication user name"
	}
	return ""
}

// checkPasscode applies the group passcode rules: digits only, length within range.
func (r rules) checkPasscode(passcode string) string {
	for i := 0; i < len(passcode); i++ {
		if passcode[i] < '0' || passcode[i] > '9' {
			return "[Error 4003] Invalid passcode: the passcode must contain digits only"
		}
	}
	if len(passcode) < r.passcodeMinLength || len(passcode) > r.passcodeMaxLength {
		return fmt.Sprintf("[Error 4003] Invalid passcode: the passcode must be %d to %d digits long",
			r.passcodeMinLength, r.passcodeMaxLength)
	}
	return ""
}

// historyRejection is the error a RejectFirst user returns for its first value.
//
// NOTE: only the 4008 and 4410 texts are known BroadWorks errors. The 4003 rule texts
// here are modeled on them, so clients should branch on the status, not the text.
func historyRejection(kind Kind) string {
	switch kind {
	case KindSIP:
		return "[Error 4003] Invalid authentication password: the password has been used before (password history)"
	case KindVoicemail:
		return "[Error 4003] Invalid passcode: the passcode has been used before (passcode history)"
	default:
		return "[Error 4003] Invalid password: the password has been used before (password history)"
	}
}
